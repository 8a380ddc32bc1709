"""Organisations, users and memberships: every function is scoped to one organisation."""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from puffin.auth.models import Membership, Organisation, User
from puffin.auth.schemas import (
    MembershipRead,
    OrganisationCreate,
    OrganisationPage,
    OrganisationRead,
    OrganisationUpdate,
    Principal,
    Role,
    UserCreate,
    UserPage,
    UserRead,
    UserUpdate,
)
from puffin.core.changes import diff, record_change
from puffin.core.crypto import random_password
from puffin.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from puffin.core.pagination import PageParams, paginate
from puffin.core.passwords import hash_password

INITIAL_ADMIN_USERNAME = "admin"
DEFAULT_ORGANISATION_SLUG = "default"


# --- organisations -------------------------------------------------------------------


def _organisation(session: Session, organisation_id: uuid.UUID) -> Organisation:
    org = session.get(Organisation, organisation_id)
    if org is None:
        raise NotFound(f"organisation {organisation_id} not found")
    return org


def _same_name(name: str) -> ColumnElement[bool]:
    """Match an organisation with this name, ignoring case. SQLite's lower() folds ASCII
    only, so the exact name is matched too: the unique constraint is on the exact name."""
    return (Organisation.name == name) | (func.lower(Organisation.name) == name.lower())


def create_organisation(*, session: Session, org_in: OrganisationCreate) -> OrganisationRead:
    """Create an organisation; its name and slug must be unused."""
    taken = session.scalar(
        select(Organisation.id).where(_same_name(org_in.name) | (Organisation.slug == org_in.slug))
    )
    if taken is not None:
        raise Conflict(f"an organisation named {org_in.name!r} or {org_in.slug!r} exists")
    org = Organisation(name=org_in.name, slug=org_in.slug, description=org_in.description)
    session.add(org)
    session.flush()
    record_change(
        session,
        action="create",
        object_type="organisation",
        object_id=org.id,
        organisation_id=org.id,
        summary=f"created organisation {org.name}",
        changes=org_in.model_dump(),
    )
    return OrganisationRead.model_validate(org)


def list_organisations(
    *, session: Session, principal: Principal, page: PageParams
) -> OrganisationPage:
    """Return the organisations the caller may see: all for a site admin, else their own."""
    query = select(Organisation)
    if not principal.is_site_admin:
        query = query.join(Membership, Membership.organisation_id == Organisation.id).where(
            Membership.user_id == principal.user_id
        )
    return paginate(
        session,
        query,
        page=page,
        order_by=(Organisation.name,),
        read=OrganisationRead.model_validate,
    )


def get_organisation(*, session: Session, organisation_id: uuid.UUID) -> OrganisationRead:
    """Return one organisation."""
    return OrganisationRead.model_validate(_organisation(session, organisation_id))


def get_organisation_by_slug(*, session: Session, slug: str) -> OrganisationRead | None:
    """Return the organisation with this slug, or None."""
    org = session.scalar(select(Organisation).where(Organisation.slug == slug))
    return OrganisationRead.model_validate(org) if org else None


def update_organisation(
    *, session: Session, organisation_id: uuid.UUID, org_in: OrganisationUpdate
) -> OrganisationRead:
    """Change an organisation's name, description or active flag."""
    org = _organisation(session, organisation_id)
    before = {"name": org.name, "description": org.description, "is_active": org.is_active}
    values = org_in.model_dump(exclude_unset=True, exclude_none=True)
    if "name" in values and values["name"].lower() != org.name.lower():
        clash = session.scalar(select(Organisation.id).where(_same_name(values["name"])))
        if clash is not None:
            raise Conflict(f"an organisation named {values['name']!r} exists")
    for key, value in values.items():
        setattr(org, key, value)
    session.flush()
    record_change(
        session,
        action="update",
        object_type="organisation",
        object_id=org.id,
        organisation_id=org.id,
        summary=f"updated organisation {org.name}",
        changes=diff(before, values),
    )
    return OrganisationRead.model_validate(org)


# --- users and memberships -----------------------------------------------------------


def _member(session: Session, organisation_id: uuid.UUID, user_id: uuid.UUID) -> Membership:
    membership = session.scalar(
        select(Membership).where(
            Membership.organisation_id == organisation_id, Membership.user_id == user_id
        )
    )
    if membership is None:
        raise NotFound(f"user {user_id} not found in this organisation")
    return membership


def _user_read(user: User, role: str | None) -> UserRead:
    read = UserRead.model_validate(user)
    return read.model_copy(update={"role": Role(role) if role else None})


def create_user(*, session: Session, organisation_id: uuid.UUID, user_in: UserCreate) -> UserRead:
    """Create a user who is a member of this organisation with the given role."""
    _organisation(session, organisation_id)
    if session.scalar(select(User.id).where(func.lower(User.username) == user_in.username.lower())):
        raise Conflict(f"username {user_in.username!r} is taken")
    user = User(
        username=user_in.username,
        display_name=user_in.display_name,
        email=user_in.email,
        password_hash=hash_password(user_in.password),
    )
    session.add(user)
    session.flush()
    session.add(Membership(user_id=user.id, organisation_id=organisation_id, role=user_in.role))
    try:
        session.flush()
    except IntegrityError as error:  # a concurrent insert of the same username
        raise Conflict(f"username {user_in.username!r} is taken") from error
    record_change(
        session,
        action="create",
        object_type="user",
        object_id=user.id,
        organisation_id=organisation_id,
        summary=f"created user {user.username} as {user_in.role}",
        changes=user_in.model_dump(exclude={"password"}),
    )
    return _user_read(user, user_in.role)


def list_users(*, session: Session, organisation_id: uuid.UUID, page: PageParams) -> UserPage:
    """Return the members of this organisation with their roles."""
    query = (
        select(User, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.organisation_id == organisation_id)
    )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(query.order_by(User.username).offset(page.offset).limit(page.limit))
    return UserPage(
        items=[_user_read(user, role) for user, role in rows],
        total=total,
        offset=page.offset,
        limit=page.limit,
    )


def get_user(*, session: Session, organisation_id: uuid.UUID, user_id: uuid.UUID) -> UserRead:
    """Return a member of this organisation."""
    membership = _member(session, organisation_id, user_id)
    return _user_read(membership.user, membership.role)


def update_user(
    *, session: Session, organisation_id: uuid.UUID, user_id: uuid.UUID, user_in: UserUpdate
) -> UserRead:
    """Change a member's display name, e-mail or active flag."""
    membership = _member(session, organisation_id, user_id)
    user = membership.user
    values = user_in.model_dump(exclude_unset=True)
    if values.get("is_active") is False and user.is_site_admin and _last_site_admin(session, user):
        raise InvalidInput("the last site admin cannot be deactivated")
    before = {key: getattr(user, key) for key in values}
    for key, value in values.items():
        if key == "is_active" and value is None:
            continue
        setattr(user, key, value)
    session.flush()
    record_change(
        session,
        action="update",
        object_type="user",
        object_id=user.id,
        organisation_id=organisation_id,
        summary=f"updated user {user.username}",
        changes=diff(before, values),
    )
    return _user_read(user, membership.role)


def set_password(
    *, session: Session, organisation_id: uuid.UUID, user_id: uuid.UUID, password: str
) -> None:
    """Set a member's password."""
    user = _member(session, organisation_id, user_id).user
    user.password_hash = hash_password(password)
    session.flush()
    record_change(
        session,
        action="set-password",
        object_type="user",
        object_id=user.id,
        organisation_id=organisation_id,
        summary=f"set the password of {user.username}",
    )


def set_role(
    *, session: Session, organisation_id: uuid.UUID, user_id: uuid.UUID, role: Role
) -> UserRead:
    """Change a member's role in this organisation."""
    membership = _member(session, organisation_id, user_id)
    before = membership.role
    if before == Role.ADMIN and role != Role.ADMIN:
        _refuse_removing_last_admin(session, organisation_id)
    membership.role = role
    session.flush()
    record_change(
        session,
        action="set-role",
        object_type="user",
        object_id=user_id,
        organisation_id=organisation_id,
        summary=f"changed the role of {membership.user.username} to {role}",
        changes={"role": [before, str(role)]},
    )
    return _user_read(membership.user, role)


def add_member(
    *, session: Session, organisation_id: uuid.UUID, username: str, role: Role
) -> UserRead:
    """Give an existing user a role in this organisation (site admins only)."""
    _organisation(session, organisation_id)
    user = session.scalar(select(User).where(func.lower(User.username) == username.lower()))
    if user is None:
        raise NotFound(f"no user named {username!r}")
    if session.scalar(
        select(Membership.id).where(
            Membership.organisation_id == organisation_id, Membership.user_id == user.id
        )
    ):
        raise Conflict(f"{username} is already a member")
    session.add(Membership(user_id=user.id, organisation_id=organisation_id, role=role))
    session.flush()
    record_change(
        session,
        action="add-member",
        object_type="user",
        object_id=user.id,
        organisation_id=organisation_id,
        summary=f"added {user.username} as {role}",
        changes={"role": [None, str(role)]},
    )
    return _user_read(user, role)


def remove_member(*, session: Session, organisation_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """Take a user out of this organisation."""
    membership = _member(session, organisation_id, user_id)
    if membership.role == Role.ADMIN:
        _refuse_removing_last_admin(session, organisation_id)
    username = membership.user.username
    session.delete(membership)
    session.flush()
    record_change(
        session,
        action="remove-member",
        object_type="user",
        object_id=user_id,
        organisation_id=organisation_id,
        summary=f"removed {username} from the organisation",
    )


def memberships_of(*, session: Session, user_id: uuid.UUID) -> list[MembershipRead]:
    """Return the organisations a user belongs to, with roles."""
    rows = session.execute(
        select(Membership.role, Organisation)
        .join(Organisation, Organisation.id == Membership.organisation_id)
        .where(Membership.user_id == user_id)
        .order_by(Organisation.name)
    )
    return [
        MembershipRead(
            organisation_id=org.id,
            organisation_name=org.name,
            organisation_slug=org.slug,
            role=Role(role),
        )
        for role, org in rows
    ]


def role_in(*, session: Session, user_id: uuid.UUID, organisation_id: uuid.UUID) -> Role | None:
    """Return the user's role in this organisation, or None."""
    role = session.scalar(
        select(Membership.role).where(
            Membership.user_id == user_id, Membership.organisation_id == organisation_id
        )
    )
    return Role(role) if role else None


def _refuse_removing_last_admin(session: Session, organisation_id: uuid.UUID) -> None:
    admins = session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.organisation_id == organisation_id, Membership.role == Role.ADMIN)
    )
    if (admins or 0) <= 1:
        raise InvalidInput("an organisation must keep at least one admin")


def _last_site_admin(session: Session, user: User) -> bool:
    count = session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.is_site_admin.is_(True), User.is_active.is_(True))
    )
    return (count or 0) <= 1 and user.is_site_admin


# --- first start ---------------------------------------------------------------------


def ensure_initial_admin(*, session: Session) -> tuple[str, str] | None:
    """Create the default organisation and a site admin with a random password on first start.

    Returns (username, password) when created, so the caller prints it once; None otherwise.
    """
    if session.scalar(select(User.id).limit(1)) is not None:
        return None
    org = session.scalar(select(Organisation).where(Organisation.slug == DEFAULT_ORGANISATION_SLUG))
    if org is None:
        org = Organisation(name="Default", slug=DEFAULT_ORGANISATION_SLUG)
        session.add(org)
        session.flush()
    password = random_password()
    user = User(
        username=INITIAL_ADMIN_USERNAME,
        display_name="Site administrator",
        password_hash=hash_password(password),
        is_site_admin=True,
    )
    session.add(user)
    session.flush()
    session.add(Membership(user_id=user.id, organisation_id=org.id, role=Role.ADMIN))
    session.flush()
    record_change(
        session,
        action="create",
        object_type="user",
        object_id=user.id,
        organisation_id=org.id,
        summary="created the initial site admin",
    )
    return user.username, password


def create_site_admin(
    *, session: Session, username: str, password: str, organisation_id: uuid.UUID
) -> UserRead:
    """Create a site admin who is also an admin of the given organisation (CLI use)."""
    user_in = UserCreate(username=username, password=password, role=Role.ADMIN)
    created = create_user(session=session, organisation_id=organisation_id, user_in=user_in)
    user = session.get(User, created.id)
    assert user is not None
    user.is_site_admin = True
    session.flush()
    return _user_read(user, Role.ADMIN)


def require_site_admin(principal: Principal) -> None:
    """Refuse callers who are not site admins."""
    if not principal.is_site_admin:
        raise Forbidden("only a site admin may do this")


def get_user_by_id(*, session: Session, user_id: uuid.UUID) -> UserRead:
    """Return a user by id (for the caller's own profile)."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return _user_read(user, None)
