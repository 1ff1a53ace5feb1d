"""Tag repository: the vocabulary annotators choose from. Never commits.

Tags that share a ``group`` are mutually exclusive (one softmax per group); a tag without a
group is independent. Tags are listed in creation order, which is the model's column order.

Names are unique ignoring case and spacing: each tag stores ``name_key`` (``tag_key``), so
"Dog" cannot be created next to "dog", and a label naming "DOG" is stored as "dog".
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from tagloop.db.models import Tag
from tagloop.errors import Conflict, InvalidInput
from tagloop.vocabulary import TagVocabulary

MAX_NAME = 128
# A page of GET /tags carries every tag's description, so both are bounded.
MAX_DESCRIPTION = 1000
# The default cap (``Settings.max_tags`` is the one the API applies).
MAX_TAGS = 20_000
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


def name_of(session: Session, tag_id: int) -> str | None:
    return session.scalar(select(Tag.name).where(Tag.id == tag_id))


def count_tags(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Tag)) or 0)


def list_tags(session: Session) -> list[Tag]:
    return list(session.scalars(select(Tag).order_by(Tag.id)))


@dataclass(frozen=True)
class TagRow:
    """A tag as the routes show it: with its parent's name (None: no parent)."""

    tag: Tag
    parent: str | None


@dataclass(frozen=True)
class SearchPosition:
    """Where a page of a search ended: the last tag's rank (0 exact, 1 prefix, 2 substring),
    the length of its key and its id; the next page starts after it."""

    rank: int
    length: int
    id: int


def escape_like(text: str) -> str:
    """``text`` as a LIKE pattern that matches itself ("tag_1" has a wildcard ``_``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _with_parents(session: Session, query: Select[Any]) -> list[TagRow]:
    parent = aliased(Tag)
    rows = session.execute(
        query.add_columns(parent.name).outerjoin(parent, parent.id == Tag.parent_id)
    )
    return [TagRow(tag=t, parent=p) for t, p in rows]


def page_tags(session: Session, *, limit: int, after_id: int | None = None) -> list[TagRow]:
    """At most ``limit`` tags in creation order (the model's column order) after ``after_id``."""
    query = select(Tag).order_by(Tag.id).limit(limit)
    if after_id is not None:
        query = query.where(Tag.id > after_id)
    return _with_parents(session, query)


def search_rank(key: str) -> Any:
    """SQL: 0 where a tag's key is ``key``, 1 where it starts with it, else 2."""
    return case(
        (Tag.name_key == key, 0),
        (Tag.name_key.like(escape_like(key) + "%", escape="\\"), 1),
        else_=2,
    )


def search_tags(
    session: Session, q: str, *, limit: int, after: SearchPosition | None = None
) -> list[tuple[TagRow, SearchPosition]]:
    """Tags whose name holds ``q`` ignoring case and spacing (the ``tag_key`` of both): the
    exact match first, then names that start with ``q``, then the others that hold it; in
    each, shorter names first, then creation order. At most ``limit`` after ``after``, each
    with its position (the next page's ``after``). Both databases order the same: the keys
    are computed in Python and compared as plain strings."""
    key = tag_key(q)
    rank = search_rank(key)
    length = func.length(Tag.name_key)
    query = (
        select(Tag)
        .add_columns(rank, length)
        .where(Tag.name_key.like("%" + escape_like(key) + "%", escape="\\"))
        .order_by(rank, length, Tag.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(
            or_(
                rank > after.rank,
                and_(rank == after.rank, length > after.length),
                and_(rank == after.rank, length == after.length, Tag.id > after.id),
            )
        )
    parent = aliased(Tag)
    rows = session.execute(
        query.add_columns(parent.name).outerjoin(parent, parent.id == Tag.parent_id)
    )
    return [
        (TagRow(tag=t, parent=p), SearchPosition(rank=int(r), length=int(n), id=t.id))
        for t, r, n, p in rows
    ]


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


def check_description(description: str) -> str:
    """The description trimmed; ``invalid_tag_description`` for text a database cannot hold
    or longer than ``MAX_DESCRIPTION`` characters."""
    if unstorable(description):
        raise InvalidInput(
            "a tag description must not hold NUL or lone surrogate characters",
            code="invalid_tag_description",
        )
    text = description.strip()
    if len(text) > MAX_DESCRIPTION:
        raise InvalidInput(
            f"a tag description is at most {MAX_DESCRIPTION} characters, got {len(text)}",
            code="invalid_tag_description",
        )
    return text


def check_room(session: Session, *, adding: int, max_tags: int) -> None:
    """``too_many_tags_in_vocabulary`` when ``adding`` more tags would pass ``max_tags``."""
    have = count_tags(session)
    if have + adding > max_tags:
        raise InvalidInput(
            f"the vocabulary holds at most {max_tags} tags; it has {have}, "
            f"{adding} more would pass that",
            code="too_many_tags_in_vocabulary",
        )


def create_tag(
    session: Session,
    *,
    name: str,
    description: str = "",
    group: str | None = None,
    parent: str | None = None,
    max_tags: int = MAX_TAGS,
) -> Tag:
    """Add a tag; ``tag_exists`` (409) when a tag of the same name ignoring case and spacing
    exists; ``invalid_tag_name`` / ``invalid_tag_description`` for text a database cannot
    hold, or longer than ``MAX_NAME`` / ``MAX_DESCRIPTION`` characters;
    ``unknown_parent`` when ``parent`` names no tag; ``too_many_tags_in_vocabulary`` past
    ``max_tags`` tags."""
    name = normalize_name(name)
    key = tag_key(name)
    group = normalize_name(group, what="tag group") if group and group.strip() else None
    text = check_description(description)
    parent_id = None
    if parent and parent.strip():
        found = find_tags(session, [normalize_name(parent, what="parent tag")])
        if not found:
            raise InvalidInput(f"parent tag {parent!r} does not exist", code="unknown_parent")
        parent_id = next(iter(found.values())).id
    check_room(session, adding=1, max_tags=max_tags)
    existing = session.scalar(select(Tag.name).where(Tag.name_key == key))
    if existing is not None:
        raise Conflict(_exists_message(name, existing), code="tag_exists")
    tag = Tag(name=name, name_key=key, description=text, group=group, parent_id=parent_id)
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
