"""Rules: the server's Sigma rules with the caller's organisation's switches, and load problems."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from puffin.auth.dependencies import OrgAdmin, Reader, SessionDep, SiteAdmin, StateDep
from puffin.auth.schemas import Principal
from puffin.core.errors import NotFound
from puffin.core.pagination import PageParams
from puffin.detection import rule_catalogue
from puffin.detection.registry import RuleSetSnapshot, rule_registry
from puffin.detection.rule_catalogue import (
    ProblemPage,
    ReloadRead,
    RuleDetail,
    RuleFilter,
    RulePage,
    RuleSettingsRead,
    RuleSettingsUpdate,
)

router = APIRouter(prefix="/rules", tags=["rules"])

RuleId = Annotated[str, Path(min_length=1, max_length=100)]


def current_rules(state: StateDep) -> RuleSetSnapshot:
    """Return the rule registry's current snapshot."""
    return rule_registry(state).current


SnapshotDep = Annotated[RuleSetSnapshot, Depends(current_rules)]


def _org(principal: Principal) -> uuid.UUID:
    if principal.organisation_id is None:
        raise NotFound("no organisation selected; choose one first")
    return principal.organisation_id


@router.get("", response_model=RulePage)
def list_rules(
    principal: Reader,
    session: SessionDep,
    snapshot: SnapshotDep,
    page: Annotated[PageParams, Depends()],
    rule_filter: Annotated[RuleFilter, Query()],
) -> RulePage:
    """List the loaded rules, most severe first, with this organisation's switches."""
    return rule_catalogue.list_rules(
        session=session,
        snapshot=snapshot,
        organisation_id=_org(principal),
        rule_filter=rule_filter,
        page=page,
    )


@router.get("/problems", response_model=ProblemPage)
def list_problems(
    principal: Reader,
    snapshot: SnapshotDep,
    page: Annotated[PageParams, Depends()],
    pack: Annotated[str | None, Query(max_length=100)] = None,
) -> ProblemPage:
    """List the rules that did not load, or were ignored as duplicates, with file, line, reason."""
    return rule_catalogue.list_problems(snapshot=snapshot, page=page, pack=pack)


@router.post("/reload", response_model=ReloadRead)
def reload_rules(principal: SiteAdmin, state: StateDep) -> ReloadRead:
    """Load the rule packs again, e.g. after `puffin rules import` (site admins)."""
    return rule_catalogue.reload_summary(rule_registry(state).reload())


@router.get("/{rule_id}", response_model=RuleDetail)
def get_rule(
    rule_id: RuleId, principal: Reader, session: SessionDep, snapshot: SnapshotDep
) -> RuleDetail:
    """Return a rule: metadata, YAML source, this organisation's switches and its error count."""
    return rule_catalogue.get_rule(
        session=session,
        snapshot=snapshot,
        organisation_id=_org(principal),
        rule_id=rule_id,
        full_errors=principal.is_site_admin,
    )


@router.put("/{rule_id}/settings", response_model=RuleSettingsRead)
def update_settings(
    rule_id: RuleId,
    settings_in: RuleSettingsUpdate,
    principal: OrgAdmin,
    session: SessionDep,
    snapshot: SnapshotDep,
) -> RuleSettingsRead:
    """Enable or disable, stage or promote a rule in this organisation (recorded in the audit)."""
    return rule_catalogue.update_settings(
        session=session,
        snapshot=snapshot,
        organisation_id=_org(principal),
        rule_id=rule_id,
        settings_in=settings_in,
    )
