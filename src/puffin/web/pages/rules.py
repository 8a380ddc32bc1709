"""Rules: the loaded Sigma rules with this organisation's switches, a rule's detail, problems."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from puffin.alert import service as alert_service
from puffin.alert.schemas import AlertFilter, StagedFilter
from puffin.auth.dependencies import SessionDep
from puffin.core.errors import Forbidden, InvalidInput
from puffin.core.pagination import PageParams
from puffin.detection import rule_catalogue
from puffin.detection.registry import RuleSetSnapshot, rule_registry
from puffin.detection.rule_catalogue import RuleFilter, RulePage, RuleSettingsUpdate
from puffin.web.deps import (
    AdminConsole,
    ConsoleDep,
    FormDep,
    MemberConsole,
    console_router,
    organisation_of,
)
from puffin.web.forms import parse_form
from puffin.web.render import render
from puffin.web.security import app_state, safe_next, set_flash

router = console_router("/rules")

PAGE_SIZE = 50
PROBLEMS_SHOWN = 20
MAX_OFFSET = 10_000_000
_FILTERS = ("text", "level", "pack", "enabled", "staged")
_ACTIONS = {
    "enable": (RuleSettingsUpdate(enabled=True), "enabled"),
    "disable": (RuleSettingsUpdate(enabled=False), "disabled"),
    "stage": (RuleSettingsUpdate(staged=True), "staged: its alerts are stored, not forwarded"),
    "promote": (RuleSettingsUpdate(staged=False), "promoted: its alerts are forwarded"),
}
_CHOICES = [("", "any"), ("true", "yes"), ("false", "no")]


def _snapshot(request: Request) -> RuleSetSnapshot:
    return rule_registry(app_state(request)).current


def _page(offset: int, limit: int = PAGE_SIZE) -> PageParams:
    return PageParams(offset=min(max(offset, 0), MAX_OFFSET), limit=limit)


@router.get("", response_class=HTMLResponse)
def rules_page(
    request: Request, console: MemberConsole, session: SessionDep, offset: int = 0
) -> HTMLResponse:
    """Show the rules, most severe first, with filters and this organisation's switches."""
    snapshot = _snapshot(request)
    values = {name: request.query_params.get(name, "") for name in _FILTERS}
    rule_filter, errors = parse_form(RuleFilter, values)
    page = RulePage(items=[], total=0, offset=0, limit=PAGE_SIZE)
    if rule_filter is not None:
        page = rule_catalogue.list_rules(
            session=session,
            snapshot=snapshot,
            organisation_id=organisation_of(console),
            rule_filter=rule_filter,
            page=_page(offset),
        )
    query: dict[str, Any] = {k: v for k, v in values.items() if v}
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    context = {
        "page": page,
        "values": values,
        "errors": errors,
        "query": query,
        "here": safe_next(here, "/rules"),
        "packs": [("", "any")] + [(name, name) for name in snapshot.packs],
        "choices": _CHOICES,
        "problems": rule_catalogue.list_problems(snapshot=snapshot, page=_page(0, PROBLEMS_SHOWN)),
        "loaded_at": snapshot.loaded_at,
    }
    return render(
        request,
        "rules/list.html",
        context,
        console=console,
        section="rules",
        status_code=422 if errors else 200,
    )


@router.get("/problems", response_class=HTMLResponse)
def problems_page(request: Request, console: MemberConsole, offset: int = 0) -> HTMLResponse:
    """Show every rule that did not load, or was ignored, with its file, line and reason."""
    snapshot = _snapshot(request)
    problems = rule_catalogue.list_problems(snapshot=snapshot, page=_page(offset))
    return render(
        request,
        "rules/problems.html",
        {"problems": problems, "loaded_at": snapshot.loaded_at},
        console=console,
        section="rules",
    )


@router.post("/reload", response_model=None)
def reload_rules(request: Request, console: ConsoleDep) -> RedirectResponse:
    """Load the rule packs again, e.g. after `puffin rules import` (site admins)."""
    if not console.principal.is_site_admin:
        raise Forbidden("only a site admin may reload the rules")
    summary = rule_catalogue.reload_summary(rule_registry(app_state(request)).reload())
    redirect = RedirectResponse("/rules", status_code=303)
    message = f"Rules reloaded: {summary.rules} rules, {summary.problems} broken."
    set_flash(redirect, app_state(request), message)
    return redirect


@router.get("/{rule_id}", response_class=HTMLResponse)
def rule_page(
    request: Request, rule_id: str, console: MemberConsole, session: SessionDep
) -> HTMLResponse:
    """Show a rule: description, ATT&CK tags, false positives, errors and its YAML source."""
    organisation_id = organisation_of(console)
    rule = rule_catalogue.get_rule(
        session=session,
        snapshot=_snapshot(request),
        organisation_id=organisation_id,
        rule_id=rule_id,
        full_errors=console.principal.is_site_admin,
    )
    tactics, techniques = alert_service.attack_from_tags(rule.tags)
    context = {
        "rule": rule,
        "tactics": tactics,
        "techniques": techniques,
        "other_tags": [t for t in rule.tags if not t.lower().startswith("attack.")],
        "alerts": _alert_count(session, organisation_id, rule_id),
        "here": f"/rules/{quote(rule_id, safe='')}",
    }
    return render(request, "rules/detail.html", context, console=console, section="rules")


@router.post("/{rule_id}/settings", response_model=None)
def change_settings(
    request: Request, rule_id: str, console: AdminConsole, session: SessionDep, form: FormDep
) -> RedirectResponse:
    """Enable, disable, stage or promote a rule in this organisation."""
    action = _ACTIONS.get(form.get("action", ""))
    if action is None:
        raise InvalidInput("choose enable, disable, stage or promote")
    settings_in, done = action
    snapshot = _snapshot(request)
    rule_catalogue.update_settings(
        session=session,
        snapshot=snapshot,
        organisation_id=organisation_of(console),
        rule_id=rule_id,
        settings_in=settings_in,
    )
    target = safe_next(form.get("next"), f"/rules/{quote(rule_id, safe='')}")
    redirect = RedirectResponse(target, status_code=303)
    entry = snapshot.entries[rule_id]
    set_flash(redirect, app_state(request), f"Rule “{entry.title or rule_id}” {done}.")
    return redirect


def _alert_count(session: Session, organisation_id: Any, rule_id: str) -> int | None:
    """Return how many alerts the rule raised in this organisation, staged or not."""
    if len(rule_id) > 100:
        return None
    found = alert_service.list_alerts(
        session=session,
        organisation_id=organisation_id,
        alert_filter=AlertFilter(rule_id=rule_id, staged=StagedFilter.INCLUDE),
        page=PageParams(limit=1),
    )
    return found.total
