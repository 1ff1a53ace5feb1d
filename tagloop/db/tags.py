"""Tag repository: the vocabulary annotators choose from. Never commits.

Tags that share a ``group`` are mutually exclusive (one softmax per group); a tag without a
group is independent. Tags are listed in creation order, which is the model's column order.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tagloop.db.models import Tag
from tagloop.errors import Conflict, InvalidInput
from tagloop.vocabulary import TagVocabulary

MAX_NAME = 128


def normalize_name(raw: str, *, what: str = "tag name") -> str:
    """Trimmed name; raises ``invalid_tag_name`` when empty or longer than 128 characters."""
    name = raw.strip()
    if not name:
        raise InvalidInput(f"a {what} must not be empty", code="invalid_tag_name")
    if len(name) > MAX_NAME:
        raise InvalidInput(
            f"a {what} is at most {MAX_NAME} characters, got {len(name)}", code="invalid_tag_name"
        )
    return name


def list_tags(session: Session) -> list[Tag]:
    return list(session.scalars(select(Tag).order_by(Tag.id)))


def find_tags(session: Session, names: Iterable[str]) -> dict[str, Tag]:
    """Name -> Tag for the names that exist (unknown names are simply absent)."""
    wanted = set(names)
    if not wanted:
        return {}
    return {t.name: t for t in session.scalars(select(Tag).where(Tag.name.in_(wanted)))}


def create_tag(
    session: Session, *, name: str, description: str = "", group: str | None = None
) -> Tag:
    """Add a tag; ``tag_exists`` (409) when the trimmed name is taken."""
    name = normalize_name(name)
    group = normalize_name(group, what="tag group") if group and group.strip() else None
    if session.scalar(select(Tag.id).where(Tag.name == name)) is not None:
        raise Conflict(f"tag {name!r} already exists", code="tag_exists")
    tag = Tag(name=name, description=description.strip(), group=group)
    session.add(tag)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent request created the same name first
        raise Conflict(f"tag {name!r} already exists", code="tag_exists") from exc
    return tag


def load_vocabulary(session: Session) -> TagVocabulary:
    """Every tag, in creation order, as the model and the selector see them."""
    return TagVocabulary.from_pairs((t.name, t.group) for t in list_tags(session))
