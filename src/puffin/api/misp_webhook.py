"""The MISP event fixer's webhook, shared by the Puffin server and the standalone service.

MISP's workflow calls `POST /webhook/misp_event_fixer/` on `event-publish`; the route
checks the bearer token, runs the (synchronous) fixer in a worker thread, records the
run for the console and the API, counts it in the metrics, and answers with a summary.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.orm import Session, sessionmaker

from puffin.api.errors import problem
from puffin.auth import service as auth_service
from puffin.core.clock import utcnow
from puffin.core.db import transaction
from puffin.core.errors import PuffinError
from puffin.intel import service as intel_service
from puffin.intel.metrics import FixerMetrics
from puffin.intel.misp_fixer import tokens
from puffin.intel.misp_fixer.fixer import Fixer, RunReport, build_fixer
from puffin.intel.misp_fixer.misp import EventNotFound, MispError
from puffin.intel.misp_fixer.settings import FixerSettings
from puffin.intel.schemas import RunCreate, RunDetail, RunStatus, RunTrigger

WEBHOOK_PATH = "/webhook/misp_event_fixer/"
STATE_ATTRIBUTE = "misp_fixer"
_EVENT_REF = (
    r"^(\d{1,20}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
)
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class FixerNotConfigured(PuffinError):
    """The fixer cannot run: MISP's address or key (or its organisation) is missing."""

    status_code = 503
    title = "MISP fixer not configured"


class WebhookBody(BaseModel):
    """What MISP's workflow sends (its templating renders every value as a string).

    The templating renders an empty value as "": an empty (or blank) field counts as
    absent. The event is named by `event_id` or, when that is absent, by `event_uuid`.
    """

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    event_id: str | None = Field(
        default=None, pattern=_EVENT_REF, description="The event's id (digits) or UUID."
    )
    event_uuid: str | None = Field(default=None, pattern=_UUID)
    event_attribute_count: str | None = Field(default=None, pattern=r"^\d{1,9}$")

    @field_validator("event_id", "event_uuid", "event_attribute_count", mode="before")
    @classmethod
    def _empty_is_absent(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value

    @model_validator(mode="after")
    def _names_an_event(self) -> WebhookBody:
        if self.event_id is None and self.event_uuid is None:
            raise ValueError(
                "event_id or event_uuid is required (both are missing or empty); "
                "the workflow should send the event's id or UUID"
            )
        return self

    @property
    def event_ref(self) -> str:
        """Return the event's id, or its UUID when no id was sent."""
        return self.event_id or self.event_uuid or ""


class WebhookAnswer(BaseModel):
    """The summary of a run, as the webhook answers it."""

    run_id: uuid.UUID
    event_id: str
    event_uuid: str
    status: RunStatus
    skipped_reason: str | None
    partial: bool
    attributes: int
    false_positives: int
    changes: int
    changes_by_kind: dict[str, int]
    lookups: int
    not_looked_up: int
    errors: list[str]
    duration_seconds: float


class MispFixerService:
    """The fixer, its settings, where runs are recorded and counted; owned by one app."""

    def __init__(
        self,
        *,
        settings: FixerSettings,
        data_dir: Path,
        session_factory: sessionmaker[Session],
        registry: CollectorRegistry,
    ) -> None:
        self.settings, self.data_dir = settings, data_dir
        self.session_factory = session_factory
        self.metrics = FixerMetrics(registry)
        self._fixer: Fixer | None = None
        self._building = threading.Lock()

    @property
    def configured(self) -> bool:
        return bool(self.settings.misp_url) and self.settings.misp_key is not None

    def authenticate(self, authorization: str | None) -> str:
        """Return who the bearer token stands for, or raise TokenRefused (401)."""
        static = self.settings.static_token
        return tokens.verify(
            tokens.bearer(authorization),
            jwt_secret=tokens.jwt_secret(self.settings, self.data_dir),
            static_token=static.get_secret_value() if static is not None else None,
        )

    def fix(self, *, event_ref: str, trigger: RunTrigger, dry_run: bool = False) -> RunDetail:
        """Run the fixer on one event, record the run and return it; re-raise fetch errors."""
        if not self.configured:
            raise FixerNotConfigured(
                "set misp_fixer.misp_url and misp_fixer.misp_key "
                "(puffin.toml [misp_fixer] or PUFFIN_MISP_FIXER__MISP_URL / __MISP_KEY)"
            )
        organisation_id = self._organisation_id()
        started = utcnow()
        try:
            report = self.fixer().run(event_id=event_ref, dry_run=dry_run)
        except (EventNotFound, MispError) as error:
            self._record_failure(organisation_id, event_ref, trigger, started, error.detail)
            raise
        return self._record(organisation_id, report, trigger)

    def fixer(self) -> Fixer:
        """Return the fixer, built on first use (loading warninglists takes a while)."""
        with self._building:
            if self._fixer is None:
                self._fixer = build_fixer(self.settings, data_dir=self.data_dir)
            return self._fixer

    def close(self) -> None:
        """Release the fixer's resources."""
        if self._fixer is not None:
            self._fixer.close()

    def _organisation_id(self) -> uuid.UUID:
        with transaction(self.session_factory) as session:
            found = auth_service.get_organisation_by_slug(
                session=session, slug=self.settings.organisation
            )
        if found is None:
            raise FixerNotConfigured(
                f"organisation {self.settings.organisation!r} does not exist; "
                "set misp_fixer.organisation to an organisation's slug"
            )
        return found.id

    def _record(
        self, organisation_id: uuid.UUID, report: RunReport, trigger: RunTrigger
    ) -> RunDetail:
        run_in = run_from_report(report, trigger=trigger, finished_at=utcnow())
        with transaction(self.session_factory) as session:
            run = intel_service.record_run(
                session=session, organisation_id=organisation_id, run_in=run_in
            )
        self.metrics.observe(
            status=run.status.value,
            change_kinds=[change.kind for change in run_in.changes] if not report.dry_run else [],
            sources=[decision.source for decision in run_in.decisions],
            remote=report.lookups,
        )
        return run

    def _record_failure(
        self,
        organisation_id: uuid.UUID,
        event_ref: str,
        trigger: RunTrigger,
        started: datetime,
        reason: str,
    ) -> None:
        finished = utcnow()
        run_in = RunCreate(
            trigger=trigger,
            event_id=event_ref,
            event_uuid=event_ref if "-" in event_ref else "",
            status=RunStatus.FAILED,
            started_at=started,
            finished_at=finished,
            duration_seconds=round((finished - started).total_seconds(), 3),
            errors=[reason],
        )
        with transaction(self.session_factory) as session:
            intel_service.record_run(
                session=session, organisation_id=organisation_id, run_in=run_in
            )
        self.metrics.observe(status=RunStatus.FAILED.value, change_kinds=[], sources=[], remote=0)


def run_from_report(report: RunReport, *, trigger: RunTrigger, finished_at: datetime) -> RunCreate:
    """Turn the fixer's report into the record of the run."""
    changes = report.planned if report.dry_run else report.applied
    return RunCreate(
        trigger=trigger,
        event_id=report.event_id,
        event_uuid=report.event_uuid,
        event_info=report.event_info,
        status=_status(report),
        dry_run=report.dry_run,
        skipped_reason=report.skipped_reason,
        started_at=report.started_at,
        finished_at=finished_at,
        duration_seconds=report.duration_seconds,
        attributes=report.attributes,
        lookups=report.lookups,
        not_looked_up=report.not_looked_up,
        misp_write_calls=report.misp_write_calls,
        decisions=[_fields(decision) for decision in report.decisions],
        changes=[_fields(change) for change in changes],
        errors=report.errors,
    )


def _fields(item: Any) -> dict[str, Any]:
    """Return a (flat, slotted) dataclass's fields as a dict, without `asdict`'s deep copy."""
    return {name.name: getattr(item, name.name) for name in dataclasses.fields(item)}


def _status(report: RunReport) -> RunStatus:
    if report.skipped_reason:
        return RunStatus.SKIPPED
    return RunStatus.PARTIAL if report.partial else RunStatus.DONE


def fixer_service(request: Request) -> MispFixerService:
    """Return the application's fixer service."""
    service: MispFixerService = getattr(request.app.state, STATE_ATTRIBUTE)
    return service


ServiceDep = Annotated[MispFixerService, Depends(fixer_service)]


def webhook_caller(
    service: ServiceDep, authorization: Annotated[str | None, Header()] = None
) -> str:
    """Check the bearer token before anything else; 401 with the reason otherwise."""
    return service.authenticate(authorization)


router = APIRouter(tags=["misp-fixer"])


@router.post(
    WEBHOOK_PATH,
    response_model=WebhookAnswer,
    summary="Fix a MISP event before it is published",
    responses={
        401: {"description": "Missing, invalid or expired token"},
        404: {"description": "MISP has no such event"},
        422: {"description": "Malformed body"},
        502: {"description": "MISP unreachable or failed mid-run (the run is partial)"},
        503: {"description": "The fixer is not configured"},
    },
)
async def misp_event_fixer(
    body: WebhookBody,
    service: ServiceDep,
    caller: Annotated[str, Depends(webhook_caller)],
) -> Any:
    """Fix the event MISP's workflow names: false positives, flags, TLP; record the run."""
    run = await asyncio.to_thread(service.fix, event_ref=body.event_ref, trigger=RunTrigger.WEBHOOK)
    answer = _answer(run)
    if run.status is RunStatus.PARTIAL:
        detail = "; ".join(run.errors) or "MISP failed during the run"
        return problem(
            502, "MISP failed during the run", detail, run=answer.model_dump(mode="json")
        )
    return answer


router.add_api_route(
    WEBHOOK_PATH.rstrip("/"),
    misp_event_fixer,
    methods=["POST"],
    response_model=WebhookAnswer,
    include_in_schema=False,
)


def _answer(run: RunDetail) -> WebhookAnswer:
    return WebhookAnswer(
        run_id=run.id,
        event_id=run.event_id,
        event_uuid=run.event_uuid,
        status=run.status,
        skipped_reason=run.skipped_reason,
        partial=run.status is RunStatus.PARTIAL,
        attributes=run.attributes,
        false_positives=run.false_positives,
        changes=run.changes_count,
        changes_by_kind=dict(Counter(change.kind for change in run.changes)),
        lookups=run.lookups,
        not_looked_up=run.not_looked_up,
        errors=run.errors,
        duration_seconds=run.duration_seconds,
    )
