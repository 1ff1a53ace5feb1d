"""Reading a taxonomy file (tagloop.taxonomy) and checking its rows against a vocabulary
(tagloop.db.taxonomy.check_rows), without a database."""

from __future__ import annotations

import pytest

from tagloop.db.taxonomy import _cyclic, _Existing, check_rows
from tagloop.errors import InvalidInput
from tagloop.taxonomy import (
    TaxonomyRow,
    detect_format,
    parse_csv,
    parse_json,
    write_csv,
    write_json,
)


def test_csv_reads_any_column_order_blank_lines_and_quoted_cells() -> None:
    body = (
        '\ufeffdescription,NAME,parent\n"a dog, barking",dog,animal\n\nanimal,animal,\n'
    ).encode()
    rows, errors = parse_csv(body, max_rows=10)
    assert errors == []
    assert [(r.row, r.name, r.parent, r.description) for r in rows] == [
        (1, "dog", "animal", "a dog, barking"),
        (3, "animal", None, "animal"),
    ]
    # The group column is absent: an existing tag keeps its group.
    assert rows[0].given == frozenset({"name", "parent", "description"})


def test_csv_header_and_size_are_checked() -> None:
    for body in (b"", b"title\ncat\n", b"name,name\ncat,cat\n", b"name,colour\ncat,red\n"):
        with pytest.raises(InvalidInput) as exc:
            parse_csv(body, max_rows=10)
        assert exc.value.code == "invalid_taxonomy"
    with pytest.raises(InvalidInput) as exc:
        parse_csv(b"name\na\nb\nc\n", max_rows=2)
    assert exc.value.code == "too_many_rows"
    rows, errors = parse_csv(b"name,group\ncat,,extra\n,animal\n", max_rows=10)
    assert rows == [] and [(e.row, e.code) for e in errors] == [
        (1, "invalid_row"),
        (2, "invalid_tag_name"),
    ]


def test_json_takes_a_list_or_an_object_of_tags() -> None:
    rows, _ = parse_json(b'{"tags": [{"name": "cat", "group": null}]}', max_rows=5)
    assert rows == [TaxonomyRow(row=1, name="cat", given=frozenset({"name", "group"}))]
    for body in (b'{"name": "cat"}', b"7", b"[1"):
        with pytest.raises(InvalidInput):
            parse_json(body, max_rows=5)


def test_export_writers_round_trip() -> None:
    items = [
        {"name": "a,b", "group": None, "parent": None, "description": 'say "hi"'},
        {"name": "c", "group": "g", "parent": "a,b", "description": ""},
    ]
    rows, errors = parse_csv(write_csv(items).encode(), max_rows=5)
    assert errors == [] and [(r.name, r.group, r.parent) for r in rows] == [
        ("a,b", None, None),
        ("c", "g", "a,b"),
    ]
    rows, _ = parse_json(write_json(items).encode(), max_rows=5)
    assert rows[0].description == 'say "hi"' and rows[1].description is None


def test_format_comes_from_the_content_type_unless_asked() -> None:
    assert detect_format("text/csv; charset=utf-8") == "csv"
    assert detect_format("application/json") == "json"
    assert detect_format("text/plain", asked="csv") == "csv"
    with pytest.raises(InvalidInput):
        detect_format("text/plain")


def test_cycles_are_found_once_each_and_chains_into_them_are_not_cycles() -> None:
    parents = {"a": "b", "b": "c", "c": "a", "d": "a", "e": None, "f": "e", "s": "s"}
    assert _cyclic(parents) == {"a", "b", "c", "s"}
    long_chain = {f"t{i}": f"t{i - 1}" if i else None for i in range(50_000)}
    assert _cyclic(long_chain) == set()


def test_rows_are_checked_against_the_stored_vocabulary() -> None:
    existing = {
        "dog": _Existing(id=1, name="Dog", group="animal", parent_id=None, description=""),
        "pet": _Existing(id=2, name="pet", group=None, parent_id=1, description=""),
    }
    rows = [
        TaxonomyRow(row=1, name="DOG", group="animal", parent="pet"),  # pet -> dog -> pet
        TaxonomyRow(row=2, name="cat", group="animal", parent="pet"),
        TaxonomyRow(row=3, name="dog", given=frozenset({"name"})),
        TaxonomyRow(row=4, name="pet", group="other", given=frozenset({"name", "group"})),
    ]
    good, errors = check_rows(rows, existing)
    assert [g.name for g in good] == ["cat"]
    assert [(e.row, e.code) for e in errors] == [
        (1, "parent_cycle"),
        (3, "duplicate_tag"),
        (4, "tag_group_conflict"),
    ]
