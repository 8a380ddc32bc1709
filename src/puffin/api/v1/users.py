"""Members of the caller's current organisation."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from puffin.auth import service as auth_service
from puffin.auth.dependencies import OrgAdmin, Reader, SessionDep
from puffin.auth.schemas import (
    MembershipSet,
    PasswordChange,
    UserCreate,
    UserPage,
    UserRead,
    UserUpdate,
)
from puffin.core.pagination import PageParams

router = APIRouter(prefix="/users", tags=["users"])


def _org(principal: Reader | OrgAdmin) -> uuid.UUID:
    assert principal.organisation_id is not None
    return principal.organisation_id


@router.get("", response_model=UserPage)
def list_users(
    principal: Reader, session: SessionDep, page: Annotated[PageParams, Depends()]
) -> UserPage:
    """List the members of your current organisation."""
    return auth_service.list_users(session=session, organisation_id=_org(principal), page=page)


@router.post("", response_model=UserRead, status_code=status.HTTP_201_CREATED)
def create_user(user_in: UserCreate, principal: OrgAdmin, session: SessionDep) -> UserRead:
    """Create a user in your current organisation (admins)."""
    return auth_service.create_user(
        session=session, organisation_id=_org(principal), user_in=user_in
    )


@router.get("/{user_id}", response_model=UserRead)
def get_user(user_id: uuid.UUID, principal: Reader, session: SessionDep) -> UserRead:
    """Return a member of your current organisation."""
    return auth_service.get_user(session=session, organisation_id=_org(principal), user_id=user_id)


@router.patch("/{user_id}", response_model=UserRead)
def update_user(
    user_id: uuid.UUID, user_in: UserUpdate, principal: OrgAdmin, session: SessionDep
) -> UserRead:
    """Change a member's name, e-mail or active flag (admins)."""
    return auth_service.update_user(
        session=session, organisation_id=_org(principal), user_id=user_id, user_in=user_in
    )


@router.put("/{user_id}/role", response_model=UserRead)
def set_role(
    user_id: uuid.UUID, membership: MembershipSet, principal: OrgAdmin, session: SessionDep
) -> UserRead:
    """Change a member's role (admins)."""
    return auth_service.set_role(
        session=session, organisation_id=_org(principal), user_id=user_id, role=membership.role
    )


@router.put("/{user_id}/password", status_code=status.HTTP_204_NO_CONTENT)
def set_password(
    user_id: uuid.UUID, change: PasswordChange, principal: OrgAdmin, session: SessionDep
) -> Response:
    """Set a member's password (admins)."""
    auth_service.set_password(
        session=session, organisation_id=_org(principal), user_id=user_id, password=change.password
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(user_id: uuid.UUID, principal: OrgAdmin, session: SessionDep) -> Response:
    """Take a user out of your current organisation (admins)."""
    auth_service.remove_member(session=session, organisation_id=_org(principal), user_id=user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
