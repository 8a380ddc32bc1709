"""Run the fixer on one event: fetch, skip or classify, plan, apply, and report the run.

A run that cannot fetch the event raises (`EventNotFound`, `MispError`): nothing was
changed and the caller answers accordingly. Once changes start, a MISP failure stops the
run and the report says what was applied and that it is partial; running again plans
only what is still missing, because the plan is computed from the event as MISP holds it.
"""

from __future__ import annotations

import gc
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from puffin.core.clock import utcnow
from puffin.core.errors import PuffinError
from puffin.intel.misp_fixer import edits
from puffin.intel.misp_fixer import plan as planner
from puffin.intel.misp_fixer.misp import MispError, MispGateway
from puffin.intel.misp_fixer.plan import Change, Decision, EventSnapshot, Plan, VerdictLike
from puffin.intel.misp_fixer.settings import FixerSettings


class FixerSetupError(PuffinError):
    """The fixer cannot start: a file it needs (the OpenTIP cache) cannot be opened."""

    status_code = 503
    title = "MISP fixer misconfigured"


class ClassificationLike(Protocol):
    """What the fixer reads from a classification."""

    @property
    def verdicts(self) -> Mapping[tuple[str, str], VerdictLike]: ...

    @property
    def lookups(self) -> int: ...

    @property
    def not_looked_up(self) -> int: ...

    @property
    def errors(self) -> list[str]: ...


class ClassifierLike(Protocol):
    """The false-positive classifier the fixer asks."""

    def classify(
        self, items: Sequence[tuple[str, str]], *, remote_limit: int
    ) -> ClassificationLike: ...


@dataclass
class RunReport:
    """What one run saw, decided and changed; the record of the run."""

    event_id: str
    event_uuid: str = ""
    event_info: str = ""
    dry_run: bool = False
    skipped_reason: str | None = None
    attributes: int = 0
    decisions: list[Decision] = field(default_factory=list)
    planned: list[Change] = field(default_factory=list)
    applied: list[Change] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lookups: int = 0
    not_looked_up: int = 0
    misp_write_calls: int = 0
    partial: bool = False
    started_at: datetime = field(default_factory=utcnow)
    duration_seconds: float = 0.0

    @property
    def outcome(self) -> str:
        """One word for lists: skipped, partial, planned, fixed or unchanged."""
        if self.skipped_reason:
            return "skipped"
        if self.partial:
            return "partial"
        if self.dry_run:
            return "planned"
        return "fixed" if self.applied else "unchanged"

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["outcome"] = self.outcome
        return data


class Fixer:
    """Fixes MISP events with one gateway, one classifier and one set of settings."""

    def __init__(
        self,
        *,
        settings: FixerSettings,
        gateway: MispGateway,
        classifier: ClassifierLike,
        clock: Callable[[], datetime] = utcnow,
        setup_errors: Sequence[str] = (),
        on_close: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.settings, self.gateway, self.classifier = settings, gateway, classifier
        self.setup_errors = list(setup_errors)
        self._clock = clock
        self._on_close = list(on_close)
        # One run at a time: PyMISP's HTTP session is not meant to be shared by threads.
        self._lock = threading.Lock()

    def close(self) -> None:
        """Release what the fixer holds (the OpenTIP client and its cache)."""
        for close in self._on_close:
            close()

    def run(self, *, event_id: str, dry_run: bool = False) -> RunReport:
        """Fix one event (or only plan it with `dry_run`) and return the report."""
        with self._lock, _cyclic_collector_paused():
            return self._run(event_id=event_id, dry_run=dry_run)

    def _run(self, *, event_id: str, dry_run: bool) -> RunReport:
        started, began = self._clock(), time.monotonic()
        calls_before = self.gateway.write_calls
        snapshot = self.gateway.fetch_event(event_id)
        report = RunReport(
            event_id=snapshot.id,
            event_uuid=snapshot.uuid,
            event_info=snapshot.info,
            dry_run=dry_run,
            attributes=len(snapshot.attributes),
            started_at=started,
        )
        report.errors.extend(self.setup_errors)
        report.skipped_reason = planner.skip_reason(snapshot, self.settings)
        if report.skipped_reason is None:
            self._fix(snapshot, report, now=started)
        report.misp_write_calls = self.gateway.write_calls - calls_before
        report.duration_seconds = round(time.monotonic() - began, 3)
        return report

    def _fix(self, snapshot: EventSnapshot, report: RunReport, *, now: datetime) -> None:
        """Classify, plan and (unless dry-run) apply."""
        items = planner.candidates(snapshot, settings=self.settings, now=now)
        classification = self.classifier.classify(items, remote_limit=self.settings.max_attributes)
        report.lookups = classification.lookups
        report.not_looked_up = classification.not_looked_up
        report.errors.extend(classification.errors)
        try:
            plan = self._plan(snapshot, classification.verdicts, now=now)
        except MispError as error:
            report.errors.append(error.detail)
            report.partial = True
            return
        report.decisions = list(plan.decisions)
        report.planned = plan.changes()
        if not report.dry_run and not plan.is_empty:
            self._apply(plan, report, now=now)

    def _plan(
        self,
        snapshot: EventSnapshot,
        verdicts: Mapping[tuple[str, str], VerdictLike],
        *,
        now: datetime,
    ) -> Plan:
        excluded = (
            self.gateway.correlation_exclusion_values()
            if self.settings.add_correlation_exclusions
            else frozenset()
        )
        return planner.build_plan(
            snapshot,
            verdicts=verdicts,
            settings=self.settings,
            now=now,
            existing_exclusions=excluded,
        )

    def _apply(self, plan: Plan, report: RunReport, *, now: datetime) -> None:
        """Apply the plan step by step; on a MISP failure stop and mark the run partial."""
        try:
            self._edit_attributes(plan, report, now=now)
            self._add_sightings(plan, report)
            for tag in plan.event_tags:
                self.gateway.tag(uuid=plan.event_uuid, tag=tag)
                report.applied.append(Change("event_tag", plan.event_uuid, tag))
            self._exclude_from_correlation(plan, report)
        except MispError as error:
            report.errors.append(error.detail)
            report.partial = True

    def _edit_attributes(self, plan: Plan, report: RunReport, *, now: datetime) -> None:
        objects = self.gateway.fetch_objects(plan.event_id) if plan.touches_objects else {}
        plan = _without_unknown_objects(plan, objects, report)
        for page in edits.edit_pages(
            plan, objects=objects, now=now, page_size=self.settings.page_size
        ):
            self.gateway.edit_event(event_id=plan.event_id, body=page.body)
            report.applied.extend(page.changes)

    def _add_sightings(self, plan: Plan, report: RunReport) -> None:
        for batch in edits.sighting_batches(plan, size=self.settings.page_size):
            self.gateway.add_false_positive_sightings(
                attribute_ids=[str(attribute["id"]) for attribute in batch],
                source=self.settings.sighting_source,
            )
            report.applied.extend(planner.sighting_changes(batch))

    def _exclude_from_correlation(self, plan: Plan, report: RunReport) -> None:
        for value in plan.correlation_exclusions:
            self.gateway.add_correlation_exclusion(
                value=value, comment=f"false positive in event {plan.event_uuid} (Puffin)"
            )
            report.applied.append(Change("correlation_exclusion", value, "added"))


@contextmanager
def _cyclic_collector_paused() -> Iterator[None]:
    """Hold Python's cyclic garbage collector for the length of one run.

    A run of a 40,000-attribute event builds hundreds of thousands of small containers
    (MISP's JSON, the plan, the edit bodies) that reference counting frees; the cyclic
    collector's passes would walk all of them again and again, about a third of the
    run's CPU time. Runs take seconds and one at a time (the fixer's lock), and the
    collector is switched back on (when it was on) as soon as the run ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _without_unknown_objects(plan: Plan, objects: Mapping[str, Any], report: RunReport) -> Plan:
    """Drop (and report) changes to attributes whose object MISP no longer lists."""
    known = {planner.TOP_LEVEL, *objects}
    kept = tuple(c for c in plan.attribute_changes if c.object_id in known)
    for change in plan.attribute_changes:
        if change.object_id not in known:
            report.errors.append(
                f"attribute {change.attribute['uuid']} belongs to object {change.object_id}, "
                "which MISP does not list (deleted?); its changes were skipped"
            )
    return replace(plan, attribute_changes=kept)


def build_classifier(
    settings: FixerSettings, *, data_dir: Path
) -> tuple[ClassifierLike, list[str], list[Callable[[], None]]]:
    """Return the classifier the settings describe, its load problems and its closers.

    The warninglist index is built here, once, because it takes a while; OpenTIP is only
    asked when an API key is configured.
    """
    from puffin.intel.misp_fixer.classify import Classifier
    from puffin.intel.misp_fixer.opentip import BenignPolicy, OpenTipClient
    from puffin.intel.misp_fixer.warninglists import WarninglistIndex

    opentip = None
    if settings.opentip_api_key is not None:  # first: a bad cache path fails fast
        cache_path = opentip_cache_path(settings, data_dir=data_dir)
        try:
            opentip = OpenTipClient(
                api_key=settings.opentip_api_key.get_secret_value(),
                cache_path=cache_path,
                base_url=settings.opentip_url,
                concurrency=settings.opentip_concurrency,
                cache_ttl=timedelta(hours=settings.opentip_cache_ttl_hours),
                policy=BenignPolicy(zones=frozenset(settings.opentip_benign_zones)),
            )
        except (OSError, sqlite3.Error) as error:
            raise FixerSetupError(_cache_problem(settings, cache_path, error)) from error
    index = None
    if settings.warninglists_include:
        extra: dict[str, Any] = {}
        if settings.warninglists_exclude is not None:
            extra["exclude"] = settings.warninglists_exclude
        index = WarninglistIndex.load(
            settings.warninglists_path, include=settings.warninglists_include, **extra
        )
    classifier = Classifier(
        common_false_positives=settings.common_false_positives,
        warninglists=index,
        opentip=opentip,
    )
    problems = [f"warninglists: {error}" for error in (index.errors if index else ())]
    return classifier, problems, [opentip.close] if opentip is not None else []


def opentip_cache_path(settings: FixerSettings, *, data_dir: Path) -> Path:
    """Return where the OpenTIP answers are cached: the setting, or the data directory's."""
    return settings.opentip_cache_file or data_dir / "misp-fixer" / "opentip.db"


def check_setup(settings: FixerSettings, *, data_dir: Path) -> None:
    """Raise FixerSetupError when what the fixer opens at start cannot be opened.

    Cheap (the warninglists are not loaded): a service checks this before it listens.
    """
    if settings.opentip_api_key is None:
        return
    from puffin.intel.misp_fixer.opentip import OpenTipCache

    cache_path = opentip_cache_path(settings, data_dir=data_dir)
    try:
        OpenTipCache(cache_path, ttl=timedelta(0), clock=utcnow).close()
    except (OSError, sqlite3.Error) as error:
        raise FixerSetupError(_cache_problem(settings, cache_path, error)) from error


def _cache_problem(settings: FixerSettings, path: Path, error: BaseException) -> str:
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    if isinstance(error, FileExistsError) and error.filename:
        reason = f"{error.filename} is not a directory"  # mkdir's "File exists" misleads
    elif isinstance(error, NotADirectoryError) and error.filename:
        reason = f"a part of {error.filename} is not a directory"
    if settings.opentip_cache_file is not None:
        return f"misp_fixer.opentip_cache_file {path}: cannot open the OpenTIP cache: {reason}"
    return (
        f"cannot open the OpenTIP cache {path} (the default in the data directory; "
        f"set misp_fixer.opentip_cache_file to choose another file): {reason}"
    )


def build_fixer(settings: FixerSettings, *, data_dir: Path) -> Fixer:
    """Return a fixer wired from settings: a MISP gateway and the configured classifier."""
    gateway = MispGateway.from_settings(settings)
    classifier, problems, closers = build_classifier(settings, data_dir=data_dir)
    return Fixer(
        settings=settings,
        gateway=gateway,
        classifier=classifier,
        setup_errors=problems,
        on_close=closers,
    )
