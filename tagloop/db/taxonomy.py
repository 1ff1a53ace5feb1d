"""Bulk taxonomy import and export: a vocabulary of thousands of tags in one request. Never
commits.

All or nothing: every row is checked first (name, group, parent, description, duplicates,
parent cycles), and one bad row stores nothing; the errors name every bad row. Idempotent:
a row naming an existing tag (ignoring case and spacing) updates its description and parent
where the file gives other ones, and importing the same file again changes nothing. A row
may not move an existing tag to another group (``tag_group_conflict``): the group decides
which of the model's columns exclude each other, and labels already stored assume it.
New tags are appended in file order (the model's column order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, aliased

from tagloop.db.models import Tag
from tagloop.db.tags import (
    check_description,
    check_room,
    normalize_name,
    tag_key,
)
from tagloop.errors import InvalidInput, TagloopError
from tagloop.taxonomy import RowError, TaxonomyRow


class TaxonomyRejected(TagloopError):
    """Some rows cannot be imported, so none was: ``errors`` names each, in row order."""

    http_status = 422

    def __init__(self, errors: Sequence[RowError], *, rows: int) -> None:
        first = errors[0]
        super().__init__(
            f"{len(errors)} of {rows} rows cannot be imported, so none was; first: row "
            f"{first.row} ({first.name!r}): {first.message}",
            code=first.code,
        )
        self.errors = list(errors)


@dataclass(frozen=True)
class ImportOutcome:
    rows: int
    created: int
    updated: int
    unchanged: int


@dataclass
class _Existing:
    id: int
    name: str
    group: str | None
    parent_id: int | None
    description: str


@dataclass(frozen=True)
class _Checked:
    row: TaxonomyRow
    name: str
    key: str
    group: str | None
    parent_key: str | None
    description: str | None  # None: the row keeps the tag's


def _check_row(row: TaxonomyRow) -> _Checked:
    name = normalize_name(row.name)
    group = normalize_name(row.group, what="tag group") if row.group else None
    parent = normalize_name(row.parent, what="parent tag") if row.parent else None
    description = check_description(row.description or "") if "description" in row.given else None
    return _Checked(
        row=row,
        name=name,
        key=tag_key(name),
        group=group,
        parent_key=tag_key(parent) if parent else None,
        description=description,
    )


def _cyclic(parents: Mapping[str, str | None]) -> set[str]:
    """Keys on a parent cycle of ``parents`` (key -> parent key); each key is visited once."""
    state: dict[str, int] = {}  # 1: on the path being followed, 2: done
    cyclic: set[str] = set()
    for start in parents:
        path: list[str] = []
        node: str | None = start
        while node is not None and node not in state:
            state[node] = 1
            path.append(node)
            node = parents.get(node)
        if node is not None and state[node] == 1:  # came back to this path: a cycle
            cyclic.update(path[path.index(node) :])
        for n in path:
            state[n] = 2
    return cyclic


def _load_existing(session: Session) -> dict[str, _Existing]:
    rows = session.execute(
        select(Tag.id, Tag.name, Tag.name_key, Tag.group, Tag.parent_id, Tag.description)
    )
    return {
        key: _Existing(id=i, name=n, group=g, parent_id=p, description=d or "")
        for i, n, key, g, p, d in rows
    }


def check_rows(
    rows: Sequence[TaxonomyRow], existing: Mapping[str, _Existing]
) -> tuple[list[_Checked], list[RowError]]:
    """Each row checked alone and against the others and the stored tags."""
    errors: list[RowError] = []
    checked: list[_Checked] = []
    first_row: dict[str, int] = {}
    for row in rows:
        try:
            c = _check_row(row)
        except InvalidInput as exc:
            errors.append(RowError(row.row, row.name, exc.code, exc.message))
            continue
        if c.key in first_row:
            errors.append(
                RowError(
                    row.row,
                    row.name,
                    "duplicate_tag",
                    f"row {first_row[c.key]} has this tag already (names ignore case and spacing)",
                )
            )
            continue
        first_row[c.key] = row.row
        old = existing.get(c.key)
        if old is not None and "group" in row.given and old.group != c.group:
            errors.append(
                RowError(
                    row.row,
                    row.name,
                    "tag_group_conflict",
                    f"tag {old.name!r} is in group {old.group!r}, the row says {c.group!r}; "
                    "an import does not move tags between groups",
                )
            )
            continue
        checked.append(c)
    ids_to_key = {e.id: k for k, e in existing.items()}
    parents: dict[str, str | None] = {
        k: ids_to_key.get(e.parent_id) if e.parent_id is not None else None
        for k, e in existing.items()
    }
    known = set(existing) | set(first_row)
    good: list[_Checked] = []
    for c in checked:
        if c.parent_key is not None and c.parent_key not in known:
            errors.append(
                RowError(
                    c.row.row,
                    c.row.name,
                    "unknown_parent",
                    f"parent {c.row.parent!r} is neither in the file nor in the vocabulary",
                )
            )
        elif c.parent_key == c.key:
            errors.append(
                RowError(c.row.row, c.row.name, "invalid_parent", "a tag cannot be its own parent")
            )
        else:
            good.append(c)
            if "parent" in c.row.given:
                parents[c.key] = c.parent_key
            else:
                parents.setdefault(c.key, None)
    cyclic = _cyclic(parents)
    for c in good:
        if c.key in cyclic:
            errors.append(
                RowError(
                    c.row.row,
                    c.row.name,
                    "parent_cycle",
                    f"tag {c.name!r} would be its own ancestor through parent {c.row.parent!r}",
                )
            )
    errors.sort(key=lambda e: e.row)
    return [c for c in good if c.key not in cyclic], errors


def import_taxonomy(
    session: Session,
    rows: Sequence[TaxonomyRow],
    *,
    parse_errors: Sequence[RowError] = (),
    max_tags: int,
) -> ImportOutcome:
    """Create the new tags and update the changed ones of ``rows``; ``TaxonomyRejected``
    (nothing stored) when any row, ``parse_errors`` included, is bad;
    ``too_many_tags_in_vocabulary`` when the new tags would pass ``max_tags``."""
    existing = _load_existing(session)
    checked, errors = check_rows(rows, existing)
    errors = sorted([*parse_errors, *errors], key=lambda e: e.row)
    n_rows = len(rows) + len(parse_errors)
    if errors:
        raise TaxonomyRejected(errors, rows=n_rows)
    new = [c for c in checked if c.key not in existing]
    check_room(session, adding=len(new), max_tags=max_tags)
    ids = {k: e.id for k, e in existing.items()}
    if new:
        inserted = session.execute(
            insert(Tag).returning(Tag.id, Tag.name_key, sort_by_parameter_order=True),
            [
                {
                    "name": c.name,
                    "name_key": c.key,
                    "group": c.group,
                    "description": c.description or "",
                }
                for c in new
            ],
        )
        ids.update({key: tag_id for tag_id, key in inserted})
    changes: list[dict[str, Any]] = []
    updated = 0
    for c in checked:
        old = existing.get(c.key)
        change: dict[str, Any] = {}
        if "parent" in c.row.given or old is None:
            parent_id = ids[c.parent_key] if c.parent_key is not None else None
            if parent_id != (old.parent_id if old else None):
                change["parent_id"] = parent_id
        if old is not None and c.description is not None and c.description != old.description:
            change["description"] = c.description
        if change:
            changes.append({"id": ids[c.key], **change})
            updated += old is not None
    # Grouped by the columns they set: one executemany per kind of change.
    for columns in {tuple(sorted(ch)) for ch in changes}:
        batch = [ch for ch in changes if tuple(sorted(ch)) == columns]
        session.execute(update(Tag), batch)
    return ImportOutcome(
        rows=len(checked),
        created=len(new),
        updated=updated,
        unchanged=len(checked) - len(new) - updated,
    )


def export_rows(session: Session) -> list[dict[str, str | None]]:
    """Every tag in creation order as ``{"name", "group", "parent", "description"}``: what
    ``import_taxonomy`` reads back unchanged."""
    parent = aliased(Tag)
    rows = session.execute(
        select(Tag.name, Tag.group, parent.name, Tag.description)
        .outerjoin(parent, parent.id == Tag.parent_id)
        .order_by(Tag.id)
    )
    return [{"name": n, "group": g, "parent": p, "description": d or ""} for n, g, p, d in rows]
