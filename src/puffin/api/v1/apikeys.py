"""API keys: shown once at creation, stored hashed, revocable."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from puffin.auth import credentials
from puffin.auth.dependencies import Analyst, Reader, SessionDep
from puffin.auth.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPage, ApiKeyRead, Role
from puffin.core.errors import Forbidden
from puffin.core.pagination import PageParams

router = APIRouter(prefix="/api-keys", tags=["api-keys"])


@router.get("", response_model=ApiKeyPage)
def list_api_keys(
    principal: Reader,
    session: SessionDep,
    page: Annotated[PageParams, Depends()],
    all_users: Annotated[bool, Query(description="Every member's keys (admins only)")] = False,
) -> ApiKeyPage:
    """List your API keys in the current organisation, or everyone's for admins."""
    assert principal.organisation_id is not None
    if all_users and not principal.has_role(Role.ADMIN):
        raise Forbidden("only admins may list every member's keys")
    return credentials.list_api_keys(
        session=session,
        organisation_id=principal.organisation_id,
        user_id=None if all_users else principal.user_id,
        page=page,
    )


@router.post("", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
def create_api_key(key_in: ApiKeyCreate, principal: Analyst, session: SessionDep) -> ApiKeyCreated:
    """Create an API key; the response is the only time the key is shown."""
    return credentials.create_api_key(session=session, principal=principal, key_in=key_in)


@router.delete("/{key_id}", response_model=ApiKeyRead)
def revoke_api_key(key_id: uuid.UUID, principal: Analyst, session: SessionDep) -> ApiKeyRead:
    """Revoke an API key: your own, or any in the organisation for admins."""
    assert principal.organisation_id is not None
    return credentials.revoke_api_key(
        session=session,
        organisation_id=principal.organisation_id,
        key_id=key_id,
        owner_id=None if principal.has_role(Role.ADMIN) else principal.user_id,
    )
