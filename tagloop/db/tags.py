"""Tag repository: the vocabulary annotators choose from. Never commits.

Tags that share a ``group`` are mutually exclusive (one softmax per group); a tag without a
group is independent. Tags are listed in creation order, which is the model's column order.

Names are unique ignoring case and spacing: each tag stores ``name_key`` (``tag_key``), so
"Dog" cannot be created next to "dog", and a label naming "DOG" is stored as "dog".
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tagloop.db.models import Tag
from tagloop.errors import Conflict, InvalidInput
from tagloop.vocabulary import TagVocabulary

MAX_NAME = 128
# Every GET /tags returns every tag with its description, so both are bounded.
MAX_DESCRIPTION = 1000
MAX_TAGS = 5000
MAX_KEY = 512  # the name_key column; NFKC can lengthen a name (one character becomes up to 18)


def unstorable(text: str) -> bool:
    """Whether ``text`` holds what a database cannot store as text: NUL (PostgreSQL refuses
    it) or a lone surrogate (not encodable as UTF-8)."""
    return "\x00" in text or any(unicodedata.category(c) == "Cs" for c in text)


def normalize_name(raw: str, *, what: str = "tag name") -> str:
    """The name trimmed, with each run of whitespace made one space. ``invalid_tag_name`` when
    empty, longer than 128 characters, or holding control characters."""
    name = " ".join(raw.split())
    if not name:
        raise InvalidInput(f"a {what} must not be empty", code="invalid_tag_name")
    if len(name) > MAX_NAME:
        raise InvalidInput(
            f"a {what} is at most {MAX_NAME} characters, got {len(name)}", code="invalid_tag_name"
        )
    if unstorable(name) or any(unicodedata.category(c) == "Cc" for c in name):
        raise InvalidInput(f"a {what} must not hold control characters", code="invalid_tag_name")
    if len(tag_key(name)) > MAX_KEY:
        raise InvalidInput(f"this {what} is too long once normalised", code="invalid_tag_name")
    return name


def tag_key(name: str) -> str:
    """What makes two names the same tag: NFKC, case-folded, whitespace runs made one space
    ("  Hot\tDOG " and "hot dog"; "Straße" and "STRASSE")."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return " ".join(folded.split())


def count_tags(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Tag)) or 0)


def list_tags(session: Session) -> list[Tag]:
    return list(session.scalars(select(Tag).order_by(Tag.id)))


def find_tags(session: Session, names: Iterable[str]) -> dict[str, Tag]:
    """Asked name -> Tag for the names that exist, matched ignoring case and spacing (unknown
    names are simply absent). An exact name wins over a key match, which keeps legacy tags
    that differ only in case (see migration 0004) reachable by their own names."""
    wanted = set(names)
    if not wanted:
        return {}
    keys = {n: tag_key(n) for n in wanted}
    match = Tag.name.in_(wanted) | Tag.name_key.in_(set(keys.values()))
    rows = list(session.scalars(select(Tag).where(match)))
    by_name = {t.name: t for t in rows}
    by_key = {t.name_key: t for t in rows}
    found = {n: by_name.get(n) or by_key.get(keys[n]) for n in wanted}
    return {n: t for n, t in found.items() if t is not None}


def create_tag(
    session: Session, *, name: str, description: str = "", group: str | None = None
) -> Tag:
    """Add a tag; ``tag_exists`` (409) when a tag of the same name ignoring case and spacing
    exists; ``invalid_tag_name`` / ``invalid_tag_description`` for text a database cannot
    hold, or longer than ``MAX_NAME`` / ``MAX_DESCRIPTION`` characters;
    ``too_many_tags_in_vocabulary`` past ``MAX_TAGS`` tags."""
    name = normalize_name(name)
    key = tag_key(name)
    group = normalize_name(group, what="tag group") if group and group.strip() else None
    if unstorable(description):
        raise InvalidInput(
            "a tag description must not hold NUL or lone surrogate characters",
            code="invalid_tag_description",
        )
    if len(description.strip()) > MAX_DESCRIPTION:
        raise InvalidInput(
            f"a tag description is at most {MAX_DESCRIPTION} characters, "
            f"got {len(description.strip())}",
            code="invalid_tag_description",
        )
    if count_tags(session) >= MAX_TAGS:
        raise InvalidInput(
            f"the vocabulary holds at most {MAX_TAGS} tags", code="too_many_tags_in_vocabulary"
        )
    existing = session.scalar(select(Tag.name).where(Tag.name_key == key))
    if existing is not None:
        raise Conflict(_exists_message(name, existing), code="tag_exists")
    tag = Tag(name=name, name_key=key, description=description.strip(), group=group)
    session.add(tag)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent request created the same name first
        raise Conflict(_exists_message(name, None), code="tag_exists") from exc
    return tag


def _exists_message(name: str, existing: str | None) -> str:
    if existing is None or existing == name:
        return f"tag {name!r} already exists"
    return f"tag {name!r} already exists as {existing!r} (names ignore case and spacing)"


def load_vocabulary(session: Session) -> TagVocabulary:
    """Every tag, in creation order, as the model and the selector see them."""
    return TagVocabulary.from_pairs((t.name, t.group) for t in list_tags(session))
