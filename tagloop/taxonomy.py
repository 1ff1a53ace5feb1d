"""A taxonomy file, CSV or JSON, as rows: what ``POST /api/v1/tags/import`` reads and
``GET /api/v1/tags/export`` writes. Pure: no database here (tagloop/db/taxonomy.py stores).

Each row has ``name`` and optionally ``group`` (tags of one group exclude each other),
``parent`` (the name of a broader tag, in the file or already in the vocabulary) and
``description``. CSV: a header row naming those columns (``name`` required, any order).
JSON: a list of objects with those keys, or ``{"tags": [...]}``. A field the row leaves out
keeps an existing tag's value; an empty one (CSV cell, ``null``, ``""``) clears it. So an
export imported back changes nothing.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tagloop.errors import InvalidInput

FIELDS = ("name", "group", "parent", "description")
Format = Literal["csv", "json"]


@dataclass(frozen=True)
class TaxonomyRow:
    """One row of the file; ``row`` counts from 1 (the first tag, after a CSV's header).
    ``given``: the fields the row has (absent ones keep an existing tag's value)."""

    row: int
    name: str
    group: str | None = None
    parent: str | None = None
    description: str | None = None
    given: frozenset[str] = field(default_factory=lambda: frozenset(FIELDS))


@dataclass(frozen=True)
class RowError:
    """Why one row cannot be imported: ``row`` (from 1), the name as written, a code."""

    row: int
    name: str
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "name": self.name, "code": self.code, "message": self.message}


def detect_format(content_type: str, *, asked: str | None = None) -> Format:
    """``csv`` or ``json``: ``asked`` when given, else from the ``Content-Type``;
    ``unsupported_format`` (422) otherwise."""
    kind = (asked or content_type.partition(";")[0].strip().lower()).lower()
    if kind in ("csv", "text/csv", "application/csv"):
        return "csv"
    if kind in ("json", "application/json"):
        return "json"
    raise InvalidInput(
        f"a taxonomy is CSV (text/csv) or JSON (application/json), got {kind or 'nothing'!r}",
        code="unsupported_format",
    )


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"the taxonomy is not UTF-8 (byte {exc.start})", code="invalid_taxonomy"
        ) from exc


def _text(value: Any) -> str | None:
    """A cell as text: None and "" (and whitespace) are empty."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(type(value).__name__)
    return value if value.strip() else None


def _row_from(number: int, item: Mapping[str, Any]) -> TaxonomyRow | RowError:
    raw_name = item.get("name")
    shown = raw_name if isinstance(raw_name, str) else ""
    unknown = sorted(str(k) for k in item if k not in FIELDS)
    if unknown:
        return RowError(
            number, shown, "invalid_row", f"unknown fields {unknown}; a row has {list(FIELDS)}"
        )
    try:
        values = {k: _text(item.get(k)) for k in FIELDS}
    except TypeError as exc:
        return RowError(number, shown, "invalid_row", f"every field is text or empty, got {exc}")
    if values["name"] is None:
        return RowError(number, shown, "invalid_tag_name", "a row needs a name")
    return TaxonomyRow(
        row=number,
        name=str(values["name"]),
        group=values["group"],
        parent=values["parent"],
        description=values["description"],
        given=frozenset(k for k in FIELDS if k in item),
    )


def parse_csv(body: bytes, *, max_rows: int) -> tuple[list[TaxonomyRow], list[RowError]]:
    """The rows of a CSV taxonomy and the rows that are not well formed (a cell too many).
    ``invalid_taxonomy`` (422) without a header naming ``name``, or with unknown columns;
    ``too_many_rows`` past ``max_rows``."""
    reader = csv.reader(io.StringIO(_decode(body), newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise InvalidInput("the taxonomy is empty", code="invalid_taxonomy") from None
    except csv.Error as exc:
        raise InvalidInput(f"the CSV header: {exc}", code="invalid_taxonomy") from exc
    unknown = [h for h in header if h not in FIELDS]
    if "name" not in header or unknown or len(set(header)) != len(header):
        raise InvalidInput(
            f"the CSV header names each of {list(FIELDS)} at most once, name included; "
            f"got {header}",
            code="invalid_taxonomy",
        )
    rows: list[TaxonomyRow] = []
    errors: list[RowError] = []
    try:
        for number, cells in enumerate(reader, start=1):
            if number > max_rows:
                raise _too_many(max_rows)
            if not any(c.strip() for c in cells):
                continue  # a blank line
            if len(cells) > len(header):
                shown = cells[header.index("name")] if header.index("name") < len(cells) else ""
                errors.append(
                    RowError(
                        number,
                        shown,
                        "invalid_row",
                        f"{len(cells)} cells, the header has {len(header)}",
                    )
                )
                continue
            parsed = _row_from(number, dict(zip(header, cells, strict=False)))
            if isinstance(parsed, RowError):
                errors.append(parsed)
            else:
                rows.append(parsed)
    except csv.Error as exc:
        raise InvalidInput(
            f"the CSV, line {reader.line_num}: {exc}", code="invalid_taxonomy"
        ) from exc
    return rows, errors


def parse_json(body: bytes, *, max_rows: int) -> tuple[list[TaxonomyRow], list[RowError]]:
    """The rows of a JSON taxonomy (a list of objects, or ``{"tags": [...]}``) and the items
    that are not rows. ``invalid_taxonomy`` (422) for anything else; ``too_many_rows``."""
    try:
        data = json.loads(_decode(body))
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"the taxonomy is not JSON: {exc}", code="invalid_taxonomy") from exc
    if isinstance(data, dict) and set(data) == {"tags"}:
        data = data["tags"]
    if not isinstance(data, list):
        raise InvalidInput(
            'a JSON taxonomy is a list of tags, or {"tags": [...]}', code="invalid_taxonomy"
        )
    if len(data) > max_rows:
        raise _too_many(max_rows)
    rows: list[TaxonomyRow] = []
    errors: list[RowError] = []
    for number, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            errors.append(RowError(number, "", "invalid_row", "a row is a JSON object"))
            continue
        parsed = _row_from(number, item)
        if isinstance(parsed, RowError):
            errors.append(parsed)
        else:
            rows.append(parsed)
    return rows, errors


def _too_many(max_rows: int) -> InvalidInput:
    return InvalidInput(
        f"a taxonomy holds at most {max_rows} rows (the vocabulary's cap)", code="too_many_rows"
    )


def parse_taxonomy(
    body: bytes, *, fmt: Format, max_rows: int
) -> tuple[list[TaxonomyRow], list[RowError]]:
    parse = parse_csv if fmt == "csv" else parse_json
    return parse(body, max_rows=max_rows)


def write_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """``{"name", "group", "parent", "description"}`` items as CSV with a header."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k) or "" for k in FIELDS})
    return out.getvalue()


def write_json(rows: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps([{k: r.get(k) for k in FIELDS} for r in rows], ensure_ascii=False)
