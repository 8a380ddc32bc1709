"""Alerts: raise from detections with dedupe windows, triage, comments and statistics."""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from puffin.alert.models import Alert, AlertComment
from puffin.alert.outputs import AlertForwarded, AlertOutputs
from puffin.alert.schemas import (
    OPEN_STATUSES,
    SEVERITY,
    AlertChanges,
    AlertDetail,
    AlertFilter,
    AlertPage,
    AlertRead,
    AlertStats,
    AlertUpdate,
    CommentCreate,
    CommentRead,
    CountItem,
    Detection,
    StagedFilter,
)
from puffin.core.changes import diff, record_change
from puffin.core.clock import utcnow
from puffin.core.errors import NotFound
from puffin.core.pagination import PageParams, paginate

AGENT_FIELD = "agent"
MAX_DEDUPE_KEY = 200  # the column's width

TACTICS = (
    "reconnaissance",
    "resource-development",
    "initial-access",
    "execution",
    "persistence",
    "privilege-escalation",
    "defense-evasion",
    "credential-access",
    "discovery",
    "lateral-movement",
    "collection",
    "command-and-control",
    "exfiltration",
    "impact",
)


def attack_from_tags(tags: list[str]) -> tuple[list[str], list[str]]:
    """Split Sigma tags into ATT&CK tactics and technique ids (`attack.t1059.001`)."""
    tactics: list[str] = []
    techniques: list[str] = []
    for tag in tags:
        name = tag.lower()
        if not name.startswith("attack."):
            continue
        value = name[len("attack.") :].replace("_", "-")
        if value.startswith("t") and value[1:2].isdigit():
            techniques.append(value.upper())
        elif value in TACTICS:
            tactics.append(value)
    return sorted(set(tactics)), sorted(set(techniques))


def dedupe_key(detection: Detection) -> str:
    """Return the key whose repeats fold into one open alert: the chosen fields' values.

    The field `agent` stands for the agent (or syslog source) that sent the event.
    """
    if not detection.dedupe_fields:
        return ""
    parts = [f"{name}={_key_value(detection, name)}" for name in detection.dedupe_fields]
    key = "|".join(parts)
    if len(key) <= MAX_DEDUPE_KEY:
        return key
    # Cutting a long key could fold different values together; a digest cannot.
    return "sha256:" + hashlib.sha256(key.encode("utf-8", errors="replace")).hexdigest()


def _key_value(detection: Detection, name: str) -> Any:
    if name == AGENT_FIELD:
        return detection.source_id or ""
    return detection.event.get(name, detection.matched.get(name, ""))


def raise_alert(
    *,
    session: Session,
    organisation_id: uuid.UUID,
    detection: Detection,
    outputs: AlertOutputs | None = None,
) -> tuple[AlertRead, bool]:
    """Store a detection as an alert, or fold it into an open one; return (alert, created).

    A new alert of a rule that is not staged is forwarded to the outputs (after commit);
    a fold is not a new alert and forwards nothing.
    """
    [(alert, created)] = _raise_many(session, organisation_id, [detection], outputs)
    return AlertRead.model_validate(alert), created


def raise_alerts(
    *,
    session: Session,
    organisation_id: uuid.UUID,
    detections: Sequence[Detection],
    outputs: AlertOutputs | None = None,
) -> list[bool]:
    """Raise many detections in order, as `raise_alert` one by one would; return `created` of each.

    The open alerts they may fold into are read in a few queries for all of them, and the
    new alerts are written in one flush: the live worker raises a batch's alerts at once.
    """
    return [created for _, created in _raise_many(session, organisation_id, detections, outputs)]


_Slot = tuple[str, str, bool]  # (rule id, dedupe key, staged): alerts a detection can fold into
_KEYS_PER_QUERY = 500


def _raise_many(
    session: Session,
    organisation_id: uuid.UUID,
    detections: Sequence[Detection],
    outputs: AlertOutputs | None,
) -> list[tuple[Alert, bool]]:
    keyed = [(d, dedupe_key(d), d.event_time or utcnow()) for d in detections]
    candidates = _open_alerts(session, organisation_id, keyed)
    results: list[tuple[Alert, bool]] = []
    for detection, key, now in keyed:
        slot = (detection.rule_id, key, detection.staged)
        if detection.dedupe_window_seconds:
            window_start = now - timedelta(seconds=detection.dedupe_window_seconds)
            existing = _latest_since(candidates.get(slot, ()), window_start)
            if existing is not None:
                existing.hits += 1
                existing.last_seen = max(existing.last_seen, now)
                existing.updated_at = utcnow()
                results.append((existing, False))
                continue
        alert = _new_alert(organisation_id, detection, key, now)
        session.add(alert)
        # Later detections of this call fold into it, as they would after a flush.
        candidates.setdefault(slot, []).append(alert)
        results.append((alert, True))
    session.flush()
    if outputs is not None:
        for alert, created in results:
            if created and not alert.staged:
                forwarded = AlertForwarded(
                    organisation_id=organisation_id, alert=AlertRead.model_validate(alert)
                )
                outputs.forward(session=session, forwarded=forwarded)
    return results


def _new_alert(organisation_id: uuid.UUID, detection: Detection, key: str, now: datetime) -> Alert:
    tactics, techniques = attack_from_tags(detection.tags)
    return Alert(
        organisation_id=organisation_id,
        rule_id=detection.rule_id,
        rule_title=detection.rule_title,
        level=detection.level,
        severity=SEVERITY[detection.level],
        tactics=tactics,
        techniques=techniques,
        source_id=detection.source_id,
        source_name=detection.source_name,
        event_id=detection.event_id,
        event=detection.event,
        matched=detection.matched,
        summary=str(detection.event.get("full_log", ""))[:2000],
        dedupe_key=key,
        hits=1,  # set here, not by the column default: a fold may count on it before flush
        staged=detection.staged,
        first_seen=now,
        last_seen=now,
    )


def _open_alerts(
    session: Session,
    organisation_id: uuid.UUID,
    keyed: Sequence[tuple[Detection, str, datetime]],
) -> dict[_Slot, list[Alert]]:
    """Return the open alerts the detections with a dedupe window could fold into, by slot."""
    windowed = [(d, key, now) for d, key, now in keyed if d.dedupe_window_seconds]
    found: dict[_Slot, list[Alert]] = {}
    if not windowed:
        return found
    # The window runs from the alert's first hit: a long attack raises one alert per
    # window, never one alert for ever. Each detection's own window is checked in
    # `_latest_since`; the query only reads from the earliest.
    earliest = min(now - timedelta(seconds=d.dedupe_window_seconds) for d, _, now in windowed)
    rule_ids = sorted({d.rule_id for d, _, _ in windowed})
    keys = sorted({key for _, key, _ in windowed})
    wanted = {(d.rule_id, key, d.staged) for d, key, _ in windowed}
    for start in range(0, len(keys), _KEYS_PER_QUERY):
        query = select(Alert).where(
            Alert.organisation_id == organisation_id,
            Alert.rule_id.in_(rule_ids),
            Alert.dedupe_key.in_(keys[start : start + _KEYS_PER_QUERY]),
            Alert.status.in_([s.value for s in OPEN_STATUSES]),
            Alert.first_seen >= earliest,
        )
        for alert in session.scalars(query):
            slot = (alert.rule_id, alert.dedupe_key, alert.staged)
            if slot in wanted:
                found.setdefault(slot, []).append(alert)
    return found


def _latest_since(alerts: Iterable[Alert], window_start: datetime) -> Alert | None:
    """Return the alert with the latest first hit at or after `window_start`, if any."""
    latest: Alert | None = None
    for alert in alerts:
        if alert.first_seen >= window_start and (
            latest is None or alert.first_seen > latest.first_seen
        ):
            latest = alert
    return latest


def _alert(session: Session, organisation_id: uuid.UUID, alert_id: uuid.UUID) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None or alert.organisation_id != organisation_id:
        raise NotFound(f"alert {alert_id} not found")
    return alert


def _filtered(organisation_id: uuid.UUID, alert_filter: AlertFilter) -> Any:
    query = select(Alert).where(Alert.organisation_id == organisation_id)
    if alert_filter.level:
        query = query.where(Alert.level == alert_filter.level)
    if alert_filter.min_severity is not None:
        query = query.where(Alert.severity >= alert_filter.min_severity)
    if alert_filter.rule_id:
        query = query.where(Alert.rule_id == alert_filter.rule_id)
    if alert_filter.source_id:
        query = query.where(Alert.source_id == alert_filter.source_id)
    if alert_filter.agent:
        agent = _contains(alert_filter.agent)
        query = query.where(func.lower(Alert.source_name).like(agent, escape="\\"))
    if alert_filter.status:
        query = query.where(Alert.status == alert_filter.status)
    if alert_filter.open_only:
        query = query.where(Alert.status.in_([s.value for s in OPEN_STATUSES]))
    if alert_filter.since:
        query = query.where(Alert.last_seen >= alert_filter.since)
    if alert_filter.until:
        query = query.where(Alert.last_seen <= alert_filter.until)
    if alert_filter.updated_since:
        query = query.where(Alert.updated_at > alert_filter.updated_since)
    if alert_filter.staged is StagedFilter.EXCLUDE:
        query = query.where(Alert.staged.is_(False))
    elif alert_filter.staged is StagedFilter.ONLY:
        query = query.where(Alert.staged.is_(True))
    if alert_filter.text:
        pattern = _contains(alert_filter.text)
        query = query.where(
            func.lower(Alert.rule_title).like(pattern, escape="\\")
            | func.lower(Alert.summary).like(pattern, escape="\\")
            | func.lower(Alert.source_name).like(pattern, escape="\\")
        )
    return query


def _contains(text: str) -> str:
    """Return a LIKE pattern (escape character backslash) for lower-cased text inside."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_alerts(
    *, session: Session, organisation_id: uuid.UUID, alert_filter: AlertFilter, page: PageParams
) -> AlertPage:
    """Return the organisation's alerts, newest activity first."""
    return paginate(
        session,
        _filtered(organisation_id, alert_filter),
        page=page,
        order_by=(Alert.last_seen.desc(), Alert.id),
        read=AlertRead.model_validate,
    )


def changed_since(
    *,
    session: Session,
    organisation_id: uuid.UUID,
    alert_filter: AlertFilter,
    since: datetime,
    limit: int,
) -> AlertChanges:
    """Return alerts changed after `since`, oldest change first: matching the filter, or not."""
    rows = session.execute(
        select(Alert.id, Alert.updated_at)
        .where(Alert.organisation_id == organisation_id, Alert.updated_at > since)
        .order_by(Alert.updated_at, Alert.id)
        .limit(limit)
    ).all()
    if not rows:
        return AlertChanges(matching=[], gone=[], until=since)
    ids = [row.id for row in rows]
    query = _filtered(organisation_id, alert_filter.model_copy(update={"updated_since": None}))
    found = session.scalars(query.where(Alert.id.in_(ids)).order_by(Alert.updated_at, Alert.id))
    matching = [AlertRead.model_validate(alert) for alert in found]
    kept = {alert.id for alert in matching}
    return AlertChanges(
        matching=matching,
        gone=[alert_id for alert_id in ids if alert_id not in kept],
        until=rows[-1].updated_at,
    )


def get_alert(*, session: Session, organisation_id: uuid.UUID, alert_id: uuid.UUID) -> AlertDetail:
    """Return one alert with its event, matched fields and comments."""
    alert = _alert(session, organisation_id, alert_id)
    comments = session.scalars(
        select(AlertComment)
        .where(AlertComment.alert_id == alert.id)
        .order_by(AlertComment.created_at)
    )
    detail = AlertDetail.model_validate(alert)
    return detail.model_copy(update={"comments": [CommentRead.model_validate(c) for c in comments]})


def update_alert(
    *, session: Session, organisation_id: uuid.UUID, alert_id: uuid.UUID, alert_in: AlertUpdate
) -> AlertRead:
    """Change an alert's status or assignee."""
    alert = _alert(session, organisation_id, alert_id)
    values = alert_in.model_dump(exclude_unset=True)
    before = {key: getattr(alert, key) for key in values}
    for key, value in values.items():
        setattr(alert, key, value)
    alert.updated_at = utcnow()
    session.flush()
    record_change(
        session,
        action="update",
        object_type="alert",
        object_id=alert.id,
        organisation_id=organisation_id,
        summary=f"updated alert {alert.rule_title}",
        changes=diff(before, values),
    )
    return AlertRead.model_validate(alert)


def add_comment(
    *,
    session: Session,
    organisation_id: uuid.UUID,
    alert_id: uuid.UUID,
    author: str,
    comment_in: CommentCreate,
) -> CommentRead:
    """Add an analyst's comment to an alert."""
    alert = _alert(session, organisation_id, alert_id)
    comment = AlertComment(alert_id=alert.id, author=author, text=comment_in.text)
    session.add(comment)
    session.flush()
    record_change(
        session,
        action="comment",
        object_type="alert",
        object_id=alert.id,
        organisation_id=organisation_id,
        summary=f"commented on alert {alert.rule_title}",
    )
    return CommentRead.model_validate(comment)


def stats(
    *,
    session: Session,
    organisation_id: uuid.UUID,
    since: datetime,
    until: datetime,
    buckets: int,
    include_staged: bool = False,
) -> AlertStats:
    """Return alert counts over time, by level, top rules, top sources and ATT&CK tactics.

    Alerts of staged rules are left out unless asked for: they are not forwarded.
    """
    width = max(int((until - since).total_seconds() // buckets), 1)
    query = select(
        Alert.last_seen, Alert.level, Alert.rule_title, Alert.source_name, Alert.tactics
    ).where(
        Alert.organisation_id == organisation_id,
        Alert.last_seen >= since,
        Alert.last_seen <= until,
    )
    if not include_staged:
        query = query.where(Alert.staged.is_(False))
    rows = session.execute(query).all()
    over_time = [0] * buckets
    levels: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    tactics: Counter[str] = Counter()
    for last_seen, level, title, source, alert_tactics in rows:
        index = int((last_seen - since).total_seconds() // width)
        over_time[min(max(index, 0), buckets - 1)] += 1
        levels[level] += 1
        rules[title] += 1
        sources[source or "(none)"] += 1
        tactics.update(alert_tactics or [])
    return AlertStats(
        since=since,
        until=until,
        bucket_seconds=width,
        over_time=[(since + timedelta(seconds=width * i), n) for i, n in enumerate(over_time)],
        by_level=_top(levels, 10),
        top_rules=_top(rules, 10),
        top_sources=_top(sources, 10),
        tactics=_top(tactics, len(TACTICS)),
    )


def _top(counter: Counter[str], limit: int) -> list[CountItem]:
    return [CountItem(key=k, count=n) for k, n in counter.most_common(limit)]
