"""API tokens: random, shown once, stored only as a SHA-256 hash.

Tokens carry 256 bits of randomness, so a fast hash is enough (no password stretching needed).
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from tagloop.db.models import ApiToken, utcnow
from tagloop.errors import InvalidInput, NotFound

ROLES = ("admin", "annotator")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, *, name: str, role: str) -> str:
    """Store a new token and return its plaintext (the only time it exists)."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", code="invalid_role")
    if not name.strip():
        raise InvalidInput("a token needs a name", code="invalid_name")
    token = "tl_" + secrets.token_urlsafe(32)
    session.add(ApiToken(token_hash=hash_token(token), name=name.strip(), role=role))
    session.flush()
    return token


def authenticate(session: Session, token: str) -> ApiToken | None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None:
        return None
    return row


def revoke_token(session: Session, *, name: str) -> int:
    rows = list(
        session.scalars(
            select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
        )
    )
    if not rows:
        raise NotFound(f"no active token named {name!r}", code="token_not_found")
    for row in rows:
        row.revoked_at = utcnow()
    return len(rows)
