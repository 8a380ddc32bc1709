"""Pydantic models of organisations, users, memberships, API keys and the caller."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from puffin.core.pagination import Page
from puffin.core.types import NameStr, SlugStr


class Role(StrEnum):
    """What a member may do in an organisation."""

    ADMIN = "admin"
    ANALYST = "analyst"
    READ_ONLY = "read-only"


ROLE_RANK = {Role.READ_ONLY: 0, Role.ANALYST: 1, Role.ADMIN: 2}

UsernameStr = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=2, max_length=150, pattern=r"^[A-Za-z0-9_.@+-]+$"
    ),
]
EmailStr = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
]
PasswordStr = Annotated[str, StringConstraints(min_length=12, max_length=1024)]


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, acting in one organisation."""

    user_id: uuid.UUID
    username: str
    is_site_admin: bool
    organisation_id: uuid.UUID | None
    role: Role | None
    via: str  # "session" or "api-key"

    def has_role(self, needed: Role) -> bool:
        """Return whether the caller's role in the current organisation is at least `needed`."""
        if self.is_site_admin:
            return True
        return self.role is not None and ROLE_RANK[self.role] >= ROLE_RANK[needed]


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class OrganisationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: NameStr
    slug: SlugStr
    description: str = Field(default="", max_length=2000)


class OrganisationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: NameStr | None = None
    description: str | None = Field(default=None, max_length=2000)
    is_active: bool | None = None


class OrganisationRead(_Read):
    id: uuid.UUID
    name: str
    slug: str
    description: str
    is_active: bool
    created_at: datetime


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: UsernameStr
    display_name: str = Field(default="", max_length=200)
    email: EmailStr | None = None
    password: PasswordStr
    role: Role = Role.ANALYST


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(default=None, max_length=200)
    email: EmailStr | None = None
    is_active: bool | None = None


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: PasswordStr


class UserRead(_Read):
    """A user as others see them; never carries the password hash."""

    id: uuid.UUID
    username: str
    display_name: str
    email: str | None
    is_site_admin: bool
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None
    role: Role | None = None


class MembershipSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role


class MembershipRead(_Read):
    organisation_id: uuid.UUID
    organisation_name: str
    organisation_slug: str
    role: Role


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: NameStr
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)
    user_id: uuid.UUID | None = Field(
        default=None, description="Create the key for this member (admins only); default: yourself"
    )


class ApiKeyRead(_Read):
    id: uuid.UUID
    user_id: uuid.UUID
    organisation_id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    """The one response that shows the key itself; it is never shown again."""

    key: str


class WhoAmI(BaseModel):
    user: UserRead
    organisation: OrganisationRead | None
    role: Role | None
    memberships: list[MembershipRead]


OrganisationPage = Page[OrganisationRead]
UserPage = Page[UserRead]
ApiKeyPage = Page[ApiKeyRead]
