"""API keys: random secrets shown once, stored only as hashes, each with one role.

Roles (deny by default; every route names the roles it admits):
    supervisor  read everything, import, compute, publish, revoke findings
    sharing     read published results, record deliveries to the city platform
    analyst     read only (ratings with explanations, findings, drafts)
and the public, without a key, sees published grades only.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, select

from service.core.clock import now
from service.core.tables import api_keys


class Role(StrEnum):
    SUPERVISOR = "supervisor"
    SHARING = "sharing"
    ANALYST = "analyst"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create(conn: Connection, *, role: Role, name: str) -> str:
    """Store a new key's hash and return the key itself: the only time it is ever shown."""
    key = "cr_" + secrets.token_urlsafe(32)
    conn.execute(
        api_keys.insert().values(
            name=name, role=role.value, prefix=key[:10], key_hash=_hash(key), created_at=now()
        )
    )
    return key


def lookup(conn: Connection, key: str) -> Principal | None:
    """The principal a presented key belongs to, or None for an unknown or revoked key."""
    row = conn.execute(
        select(api_keys.c.name, api_keys.c.role).where(
            api_keys.c.key_hash == _hash(key), api_keys.c.revoked_at.is_(None)
        )
    ).first()
    return Principal(row.name, Role(row.role)) if row else None


def listing(conn: Connection) -> list[dict[str, Any]]:
    query = select(
        api_keys.c.id,
        api_keys.c.name,
        api_keys.c.role,
        api_keys.c.prefix,
        api_keys.c.created_at,
        api_keys.c.revoked_at,
    ).order_by(api_keys.c.id)
    return [dict(r._mapping) for r in conn.execute(query)]


def revoke(conn: Connection, *, key_id: int) -> bool:
    """Revoke a key by id; False when there is no such active key."""
    result = conn.execute(
        api_keys.update()
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now())
    )
    return result.rowcount == 1
