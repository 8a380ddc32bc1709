"""Who am I: the caller, their current organisation and memberships."""

from __future__ import annotations

from fastapi import APIRouter

from puffin.auth import service as auth_service
from puffin.auth.dependencies import CurrentPrincipal, SessionDep
from puffin.auth.schemas import UserRead, WhoAmI

router = APIRouter(prefix="/me", tags=["me"])


@router.get("", response_model=WhoAmI)
def whoami(principal: CurrentPrincipal, session: SessionDep) -> WhoAmI:
    """Return the caller, the current organisation and the caller's memberships."""
    memberships = auth_service.memberships_of(session=session, user_id=principal.user_id)
    organisation = (
        auth_service.get_organisation(session=session, organisation_id=principal.organisation_id)
        if principal.organisation_id
        else None
    )
    user = auth_service.get_user_by_id(session=session, user_id=principal.user_id)
    return WhoAmI(
        user=UserRead.model_validate(user.model_copy(update={"role": principal.role})),
        organisation=organisation,
        role=principal.role,
        memberships=memberships,
    )
