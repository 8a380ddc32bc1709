"""Organisations: site admins create them; members see their own."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict

from puffin.auth import service as auth_service
from puffin.auth.dependencies import CurrentPrincipal, SessionDep, SiteAdmin
from puffin.auth.schemas import (
    OrganisationCreate,
    OrganisationPage,
    OrganisationRead,
    OrganisationUpdate,
    Role,
    UsernameStr,
    UserRead,
)
from puffin.core.errors import Forbidden, NotFound
from puffin.core.pagination import PageParams

router = APIRouter(prefix="/organisations", tags=["organisations"])


class MemberAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: UsernameStr
    role: Role = Role.ANALYST


def _visible(principal: CurrentPrincipal, organisation_id: uuid.UUID) -> None:
    if principal.is_site_admin:
        return
    if principal.organisation_id != organisation_id:
        raise NotFound(f"organisation {organisation_id} not found")


@router.get("", response_model=OrganisationPage)
def list_organisations(
    principal: CurrentPrincipal, session: SessionDep, page: Annotated[PageParams, Depends()]
) -> OrganisationPage:
    """List the organisations you may see."""
    if principal.via == "api-key" and not principal.is_site_admin:
        assert principal.organisation_id is not None
        org = auth_service.get_organisation(
            session=session, organisation_id=principal.organisation_id
        )
        return OrganisationPage(items=[org], total=1, offset=0, limit=page.limit)
    return auth_service.list_organisations(session=session, principal=principal, page=page)


@router.post("", response_model=OrganisationRead, status_code=status.HTTP_201_CREATED)
def create_organisation(
    org_in: OrganisationCreate, principal: SiteAdmin, session: SessionDep
) -> OrganisationRead:
    """Create an organisation (site admins only)."""
    return auth_service.create_organisation(session=session, org_in=org_in)


@router.get("/{organisation_id}", response_model=OrganisationRead)
def get_organisation(
    organisation_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep
) -> OrganisationRead:
    """Return one organisation you belong to."""
    _visible(principal, organisation_id)
    return auth_service.get_organisation(session=session, organisation_id=organisation_id)


@router.patch("/{organisation_id}", response_model=OrganisationRead)
def update_organisation(
    organisation_id: uuid.UUID,
    org_in: OrganisationUpdate,
    principal: CurrentPrincipal,
    session: SessionDep,
) -> OrganisationRead:
    """Rename or describe an organisation (its admins and site admins)."""
    _visible(principal, organisation_id)
    if not principal.has_role(Role.ADMIN):
        raise Forbidden("this needs the admin role in the organisation")
    if org_in.is_active is not None and not principal.is_site_admin:
        raise Forbidden("only a site admin may deactivate an organisation")
    return auth_service.update_organisation(
        session=session, organisation_id=organisation_id, org_in=org_in
    )


@router.post(
    "/{organisation_id}/members", response_model=UserRead, status_code=status.HTTP_201_CREATED
)
def add_member(
    organisation_id: uuid.UUID, member: MemberAdd, principal: SiteAdmin, session: SessionDep
) -> UserRead:
    """Give an existing user a role in an organisation (site admins only)."""
    return auth_service.add_member(
        session=session, organisation_id=organisation_id, username=member.username, role=member.role
    )
