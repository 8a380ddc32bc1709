"""The audit trail of the caller's organisation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from puffin.audit import service as audit_service
from puffin.audit.schemas import AuditFilter, AuditPage
from puffin.auth.dependencies import OrgAdmin, SessionDep
from puffin.core.errors import Forbidden
from puffin.core.pagination import PageParams

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=AuditPage)
def list_audit_entries(
    principal: OrgAdmin,
    session: SessionDep,
    page: Annotated[PageParams, Depends()],
    audit_filter: Annotated[AuditFilter, Query()],
    all_organisations: Annotated[
        bool, Query(description="Site admins: every organisation")
    ] = False,
) -> AuditPage:
    """List audit entries, newest first, filtered by actor, action, object, time or text."""
    if all_organisations and not principal.is_site_admin:
        raise Forbidden("only a site admin may read every organisation's trail")
    organisation_id = None if all_organisations else principal.organisation_id
    return audit_service.list_entries(
        session=session, organisation_id=organisation_id, audit_filter=audit_filter, page=page
    )
