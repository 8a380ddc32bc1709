"""The rule catalogue as one organisation sees it: rules, their switches, errors, problems.

Rules are global to the server (the registry's snapshot); whether a rule is enabled or
staged is per organisation (`rule_setting`). These use cases join the two for the API and
the console.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from puffin.core.errors import NotFound
from puffin.core.pagination import Page, PageParams
from puffin.detection import settings_service
from puffin.detection.engine.compiler import LEVELS
from puffin.detection.models import RuleSetting
from puffin.detection.registry import PackProblem, RuleEntry, RuleSetSnapshot, read_source
from puffin.detection.settings_service import RuleSwitch

RuleLevel = Literal["informational", "low", "medium", "high", "critical"]
_LEVEL_RANK = {level: rank for rank, level in enumerate(LEVELS)}


class RuleFilter(BaseModel):
    """Which rules to list."""

    level: RuleLevel | None = None
    text: str | None = Field(default=None, max_length=200)
    pack: str | None = Field(default=None, max_length=100)
    enabled: bool | None = None
    staged: bool | None = None


class LogsourceRead(BaseModel):
    """The Sigma logsource a rule applies to."""

    product: str
    category: str
    service: str


class DedupeRead(BaseModel):
    """A rule's own `puffin: dedupe`: repeats with the same field values fold into one alert."""

    fields: list[str] = Field(description="`agent` is the agent or syslog source that sent it")
    window_seconds: int = Field(description="from the alert's first hit; 0 turns folding off")


class RuleRead(BaseModel):
    """A rule in a list, with its state in the caller's organisation."""

    id: str
    title: str
    level: str
    status: str
    kind: str = Field(description="`detection`, or `correlation` for correlation rules")
    logsource: LogsourceRead
    pack: str
    file: str = Field(description="the rule's file, relative to its pack")
    line: int
    tags: list[str]
    enabled: bool
    staged: bool
    unmapped: list[str] = Field(description="logsource parts no event mapping knows")
    warnings: list[str]
    dedupe: DedupeRead | None = Field(
        default=None, description="the rule's own dedupe; null: the server's [detection.dedupe]"
    )


class RuleErrorsRead(BaseModel):
    """How often the rule raised while matching events, and the last error."""

    count: int
    last: str = Field(description="the last error (its type only for non site admins)")


class RuleDetail(RuleRead):
    """A rule with its description, source text and errors."""

    description: str
    falsepositives: list[str]
    source: str = Field(description="the YAML text of the rule's file")
    errors: RuleErrorsRead


class RuleSettingsUpdate(BaseModel):
    """Enable or disable, stage or promote a rule in the caller's organisation."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    staged: bool | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> RuleSettingsUpdate:
        if self.enabled is None and self.staged is None:
            raise ValueError("give enabled, staged or both")
        return self


class RuleSettingsRead(BaseModel):
    """A rule's switches in one organisation."""

    rule_id: str
    enabled: bool
    staged: bool


class ProblemRead(BaseModel):
    """A rule file that did not load, or a rule that was ignored, and why."""

    pack: str
    file: str
    line: int
    reason: str


class ReloadRead(BaseModel):
    """What a reload of the rule packs found."""

    rules: int
    problems: int
    packs: list[str]
    loaded_at: datetime


RulePage = Page[RuleRead]
ProblemPage = Page[ProblemRead]


def organisation_switches(*, session: Session, organisation_id: uuid.UUID) -> dict[str, RuleSwitch]:
    """Return the organisation's rule switches by rule id (rules without one are on, live)."""
    rows = session.scalars(
        select(RuleSetting).where(RuleSetting.organisation_id == organisation_id)
    )
    return {row.rule_id: RuleSwitch(enabled=row.enabled, staged=row.staged) for row in rows}


def list_rules(
    *,
    session: Session,
    snapshot: RuleSetSnapshot,
    organisation_id: uuid.UUID,
    rule_filter: RuleFilter,
    page: PageParams,
) -> RulePage:
    """List rules, most severe first, with the organisation's switches, filtered."""
    switches = organisation_switches(session=session, organisation_id=organisation_id)
    rows = [
        _read(entry, switches.get(entry.id, RuleSwitch()), snapshot)
        for entry in snapshot.entries.values()
        if _wanted(entry, rule_filter)
    ]
    rows = [row for row in rows if _state_wanted(row, rule_filter)]
    rows.sort(key=lambda r: (-_LEVEL_RANK.get(r.level, -1), r.title.lower(), r.id))
    items = rows[page.offset : page.offset + page.limit]
    return RulePage(items=items, total=len(rows), offset=page.offset, limit=page.limit)


def get_rule(
    *,
    session: Session,
    snapshot: RuleSetSnapshot,
    organisation_id: uuid.UUID,
    rule_id: str,
    full_errors: bool = False,
) -> RuleDetail:
    """Return a rule with its source text, the organisation's switches and its error count."""
    entry = _entry(snapshot, rule_id)
    switches = organisation_switches(session=session, organisation_id=organisation_id)
    read = _read(entry, switches.get(rule_id, RuleSwitch()), snapshot)
    errors = snapshot.ruleset.errors.get(rule_id)
    last = errors.last if errors else ""
    if not full_errors:
        # The message may quote an event of another organisation: show only its type.
        last = last.split(":", 1)[0]
    return RuleDetail(
        **read.model_dump(),
        description=entry.description,
        falsepositives=list(entry.falsepositives),
        source=read_source(entry),
        errors=RuleErrorsRead(count=errors.count if errors else 0, last=last),
    )


def update_settings(
    *,
    session: Session,
    snapshot: RuleSetSnapshot,
    organisation_id: uuid.UUID,
    rule_id: str,
    settings_in: RuleSettingsUpdate,
) -> RuleSettingsRead:
    """Enable, disable, stage or promote a known rule for one organisation (audited)."""
    _entry(snapshot, rule_id)
    switch = settings_service.set_switch(
        session=session,
        organisation_id=organisation_id,
        rule_id=rule_id,
        enabled=settings_in.enabled,
        staged=settings_in.staged,
    )
    return RuleSettingsRead(rule_id=rule_id, enabled=switch.enabled, staged=switch.staged)


def list_problems(
    *, snapshot: RuleSetSnapshot, page: PageParams, pack: str | None = None
) -> ProblemPage:
    """List the rules that did not load (or were ignored), by pack and file."""
    rows = [_problem(p) for p in snapshot.problems if pack is None or p.pack == pack]
    items = rows[page.offset : page.offset + page.limit]
    return ProblemPage(items=items, total=len(rows), offset=page.offset, limit=page.limit)


def reload_summary(snapshot: RuleSetSnapshot) -> ReloadRead:
    """Describe a freshly loaded snapshot."""
    return ReloadRead(
        rules=len(snapshot.entries),
        problems=len(snapshot.problems),
        packs=list(snapshot.packs),
        loaded_at=snapshot.loaded_at,
    )


def _entry(snapshot: RuleSetSnapshot, rule_id: str) -> RuleEntry:
    entry = snapshot.entries.get(rule_id)
    if entry is None:
        raise NotFound(f"no rule with id {rule_id!r} is loaded")
    return entry


def _wanted(entry: RuleEntry, rule_filter: RuleFilter) -> bool:
    if rule_filter.level and entry.level != rule_filter.level:
        return False
    if rule_filter.pack and entry.pack != rule_filter.pack:
        return False
    if rule_filter.text:
        needle = rule_filter.text.lower()
        haystack = " ".join((entry.id, entry.title, entry.description, entry.logsource, entry.file))
        if needle not in haystack.lower() and not any(needle in t.lower() for t in entry.tags):
            return False
    return True


def _state_wanted(row: RuleRead, rule_filter: RuleFilter) -> bool:
    if rule_filter.enabled is not None and row.enabled != rule_filter.enabled:
        return False
    return rule_filter.staged is None or row.staged == rule_filter.staged


def _read(entry: RuleEntry, switch: RuleSwitch, snapshot: RuleSetSnapshot) -> RuleRead:
    return RuleRead(
        id=entry.id,
        title=entry.title,
        level=entry.level,
        status=entry.status,
        kind=entry.kind,
        logsource=LogsourceRead(
            product=entry.product, category=entry.category, service=entry.service
        ),
        pack=entry.pack,
        file=entry.file,
        line=entry.line,
        tags=list(entry.tags),
        enabled=switch.enabled,
        staged=switch.staged,
        unmapped=list(snapshot.ruleset.unmapped.get(entry.id, [])),
        warnings=list(entry.warnings),
        dedupe=(
            DedupeRead(fields=list(entry.dedupe.fields), window_seconds=entry.dedupe.window_seconds)
            if entry.dedupe
            else None
        ),
    )


def _problem(problem: PackProblem) -> ProblemRead:
    return ProblemRead(
        pack=problem.pack, file=problem.file, line=problem.line, reason=problem.reason
    )
