"""Tables for organisations, users, memberships, API keys, console sessions and throttling."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from puffin.core.clock import utcnow
from puffin.core.db import Base
from puffin.core.types import GUID, UTCDateTime, new_id


class Organisation(Base):
    """A tenant: an MSSP runs one per customer."""

    __tablename__ = "organisation"

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    description: Mapped[str] = mapped_column(String(2000), default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    """A person who signs in to the console or calls the API."""

    __tablename__ = "user_account"

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    is_site_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )


class Membership(Base):
    """A user's role in one organisation."""

    __tablename__ = "membership"
    __table_args__ = (UniqueConstraint("user_id", "organisation_id"),)

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(
        GUID, ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        GUID, ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(back_populates="memberships")
    organisation: Mapped[Organisation] = relationship()


class ApiKey(Base):
    """A bearer token of one user in one organisation, stored as a hash."""

    __tablename__ = "api_key"

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(
        GUID, ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        GUID, ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ConsoleSession(Base):
    """A signed-in console session; the cookie holds a token whose hash is stored here."""

    __tablename__ = "console_session"

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        GUID, ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    organisation_id: Mapped[uuid.UUID | None] = mapped_column(
        GUID, ForeignKey("organisation.id", ondelete="SET NULL"), nullable=True
    )
    csrf_token: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LoginThrottle(Base):
    """Failed sign-in attempts per username, to lock out guessing."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
