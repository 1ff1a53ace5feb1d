"""Export formatting and Label Studio parsing: pure functions, no services."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from tagloop.errors import InvalidInput
from tagloop.export import (
    CSV_COLUMNS,
    ExportLabel,
    ExportPrediction,
    ExportRow,
    ExportSkip,
    format_csv,
    format_jsonl,
    format_label_studio,
    parse_label_studio,
    predicted_choices,
)

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def _rows() -> list[ExportRow]:
    return [
        ExportRow(
            clip_id=7,
            video_id=2,
            video_filename='odd, "name".mp4',
            start_s=10.0,
            end_s=20.0,
            labels=[
                ExportLabel(id=1, annotator="ann", tags=["cat"], seconds_spent=3.5, created_at=T0),
                ExportLabel(
                    id=4, annotator="bob", tags=["cat", "indoor"], seconds_spent=None, created_at=T0
                ),
            ],
            prediction=ExportPrediction(
                model_version_id=3,
                top_tags=[{"tag": "cat", "p": 0.9}, {"tag": "dog", "p": 0.2}],
                uncertainty=0.31,
                created_at=T0,
            ),
        ),
        ExportRow(
            clip_id=9,
            video_id=2,
            video_filename="b.mp4",
            start_s=0.0,
            end_s=4.0,
            prediction=ExportPrediction(
                model_version_id=3,
                top_tags=[{"tag": "dog", "p": 0.4}, {"tag": "cat", "p": 0.35}],
                uncertainty=None,
                created_at=T0,
            ),
        ),
        # Never labeled or predicted, only skipped (parked), and in the holdout.
        ExportRow(
            clip_id=11,
            video_id=3,
            video_filename="c.mp4",
            start_s=0.0,
            end_s=2.0,
            split="holdout",
            needs_review=True,
            skips=[
                ExportSkip(annotator="ann", reason="unclear", skipped_at=T0),
                ExportSkip(annotator="bob", reason='a|b: "c", d', skipped_at=None),
            ],
        ),
    ]


def _media(clip_id: int) -> str:
    return f"http://api/api/v1/clips/{clip_id}/media"


def test_jsonl_has_one_record_per_clip_with_labels_and_prediction() -> None:
    lines = "".join(format_jsonl(_rows())).splitlines()
    assert len(lines) == 3
    first, second, third = (json.loads(line) for line in lines)
    assert first["clip_id"] == 7 and first["video_filename"] == 'odd, "name".mp4'
    assert [lb["tags"] for lb in first["labels"]] == [["cat"], ["cat", "indoor"]]
    assert first["labels"][0]["annotator"] == "ann"
    assert first["prediction"]["model_version"] == 3
    assert first["prediction"]["top_tags"][0] == {"tag": "cat", "p": 0.9}
    assert first["labels"][0]["created_at"] == T0.isoformat()
    assert second["labels"] == [] and second["prediction"]["uncertainty"] is None
    assert (first["split"], first["needs_review"], first["skips"]) == ("pool", False, [])
    assert (third["split"], third["needs_review"]) == ("holdout", True)
    assert third["labels"] == [] and third["prediction"] is None
    assert third["skips"] == [
        {"annotator": "ann", "reason": "unclear", "skipped_at": T0.isoformat()},
        {"annotator": "bob", "reason": 'a|b: "c", d', "skipped_at": None},
    ]


def test_csv_quotes_odd_names_and_flattens_tags() -> None:
    table = list(csv.reader(io.StringIO("".join(format_csv(_rows())))))
    assert tuple(table[0]) == CSV_COLUMNS
    row = dict(zip(CSV_COLUMNS, table[1], strict=True))
    assert row["video_filename"] == 'odd, "name".mp4'
    assert row["label_tags"] == "cat|indoor"  # the latest label
    assert row["annotators"] == "ann|bob"
    assert row["n_labels"] == "2"
    assert row["predicted_tags"] == "cat:0.9|dog:0.2"
    assert row["uncertainty"] == "0.31"
    assert (row["split"], row["needs_review"], row["n_skips"], row["skips"]) == (
        "pool",
        "false",
        "0",
        "",
    )
    empty = dict(zip(CSV_COLUMNS, table[2], strict=True))
    assert empty["label_tags"] == "" and empty["uncertainty"] == ""
    skipped = dict(zip(CSV_COLUMNS, table[3], strict=True))
    assert (skipped["split"], skipped["needs_review"], skipped["n_skips"]) == (
        "holdout",
        "true",
        "2",
    )
    assert skipped["model_version"] == "" and skipped["n_labels"] == "0"
    # Free-text reasons hold the separators other columns use: the skips column is JSON.
    assert json.loads(skipped["skips"]) == [
        {"annotator": "ann", "reason": "unclear", "skipped_at": T0.isoformat()},
        {"annotator": "bob", "reason": 'a|b: "c", d', "skipped_at": None},
    ]


def test_predicted_choices_thresholds_and_falls_back_to_the_best() -> None:
    assert predicted_choices([{"tag": "a", "p": 0.7}, {"tag": "b", "p": 0.6}]) == ["a", "b"]
    assert predicted_choices([{"tag": "a", "p": 0.2}, {"tag": "b", "p": 0.3}]) == ["b"]
    assert predicted_choices([{"tag": "a", "p": 0.7}], threshold=0.8) == ["a"]
    assert predicted_choices([]) == []
    # Tags of one group are exclusive: a low threshold still checks only the group's best.
    grouped = [{"tag": "in", "p": 0.4}, {"tag": "out", "p": 0.35}, {"tag": "a", "p": 0.3}]
    groups = {"in": "scene", "out": "scene", "a": None}
    assert predicted_choices(grouped, threshold=0.25, groups=groups) == ["in", "a"]
    assert predicted_choices(grouped, threshold=0.25) == ["in", "out", "a"]  # no groups given


def test_label_studio_tasks_follow_the_task_format() -> None:
    tasks = json.loads("".join(format_label_studio(_rows(), media_url=_media)))
    assert [t["id"] for t in tasks] == [7, 9, 11]
    first = tasks[0]
    assert first["data"]["video"] == _media(7) and first["data"]["clip_id"] == 7
    ann = first["annotations"][1]
    assert ann["completed_by"] == "bob"
    (result,) = ann["result"]
    assert result["type"] == "choices"
    assert (result["from_name"], result["to_name"]) == ("tags", "video")
    assert result["value"] == {"choices": ["cat", "indoor"]}
    (pred,) = first["predictions"]
    assert pred["model_version"] == "v3" and pred["score"] == pytest.approx(0.9)
    assert pred["result"][0]["value"]["choices"] == ["cat"]
    # Nothing above 0.5: the prediction still names its best tag.
    assert tasks[1]["predictions"][0]["result"][0]["value"]["choices"] == ["dog"]
    assert tasks[1]["annotations"] == []
    assert first["meta"] == {"split": "pool", "needs_review": False, "skips": []}
    parked = tasks[2]
    assert parked["annotations"] == [] and parked["predictions"] == []
    assert parked["meta"]["split"] == "holdout" and parked["meta"]["needs_review"] is True
    assert [(sk["annotator"], sk["reason"]) for sk in parked["meta"]["skips"]] == [
        ("ann", "unclear"),
        ("bob", 'a|b: "c", d'),
    ]


def test_empty_export_is_valid_json() -> None:
    assert json.loads("".join(format_label_studio([], media_url=_media))) == []
    assert "".join(format_jsonl([])) == ""


def test_label_studio_round_trip_gives_back_the_labels() -> None:
    tasks = json.loads("".join(format_label_studio(_rows(), media_url=_media)))
    labels = parse_label_studio(tasks)
    assert [(lb.clip_id, lb.annotator, lb.tags, lb.seconds_spent) for lb in labels] == [
        (7, "ann", ["cat"], 3.5),
        (7, "bob", ["cat", "indoor"], None),
    ]


def test_parse_reads_a_label_studio_export() -> None:
    export = [
        {
            "id": 100,
            "data": {"video": "s3://x.mp4", "clip_id": "12"},
            "annotations": [
                {
                    "completed_by": 5,
                    "lead_time": 4.2,
                    "result": [
                        {"type": "choices", "value": {"choices": ["dog"]}},
                        {"type": "choices", "value": {"choices": ["outdoor", "dog"]}},
                        {"type": "textarea", "value": {"text": ["ignored"]}},
                    ],
                },
                {"completed_by": {"id": 6, "email": "a@b.c"}, "result": []},
                {
                    "was_cancelled": True,
                    "result": [{"type": "choices", "value": {"choices": ["x"]}}],
                },
            ],
            "predictions": [{"result": [{"type": "choices", "value": {"choices": ["cat"]}}]}],
        }
    ]
    (label,) = parse_label_studio(export)
    assert label.clip_id == 12 and label.tags == ["dog", "outdoor"]
    assert label.annotator == "label-studio:5" and label.seconds_spent == pytest.approx(4.2)


@pytest.mark.parametrize(
    "bad",
    [
        {"not": "a list"},
        [1],
        [{"data": {}}],
        [{"data": {"clip_id": "abc"}}],
        [{"data": {"clip_id": 1}, "annotations": {"x": 1}}],
        [{"data": {"clip_id": 1}, "annotations": [{"result": "nope"}]}],
        [{"data": {"clip_id": 1}, "annotations": [{"result": [{"type": "choices", "value": {}}]}]}],
    ],
)
def test_parse_rejects_what_is_not_an_export(bad: object) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_label_studio(bad)
    assert info.value.code == "invalid_label_studio_export"


def test_label_studio_checks_groups_at_their_versions_cut_and_never_pre_annotates_holdout() -> None:
    digits = [{"tag": "d3", "p": 0.34}, {"tag": "d8", "p": 0.3}, {"tag": "loud", "p": 0.2}]
    groups = {"d3": "digit", "d8": "digit", "loud": None}

    def row(clip_id: int, version: int, split: str = "pool") -> ExportRow:
        prediction = ExportPrediction(
            model_version_id=version, top_tags=digits, uncertainty=None, created_at=T0
        )
        return ExportRow(
            clip_id=clip_id,
            video_id=1,
            video_filename="a.mp4",
            start_s=0.0,
            end_s=2.0,
            split=split,
            prediction=prediction,
        )

    rows = [row(1, 5), row(2, 6), row(3, 5, split="holdout")]

    def tasks(thresholds: dict[int, float], group_thresholds: dict[int, float]) -> list[Any]:
        out = "".join(
            format_label_studio(
                rows,
                media_url=_media,
                groups=groups,
                thresholds=thresholds,
                group_thresholds=group_thresholds,
            )
        )
        return list(json.loads(out))

    def choices(task: dict[str, Any]) -> list[str]:
        return list(task["predictions"][0]["result"][0]["value"]["choices"])

    # Version 5's group cut (0.4) is above d3's 0.34; version 6 has none, so its group is
    # checked at the tags' 0.15.
    first, second, holdout = tasks({5: 0.15, 6: 0.15}, {5: 0.4})
    assert (choices(first), choices(second)) == (["loud"], ["d3", "loud"])
    assert holdout["meta"]["split"] == "holdout" and holdout["predictions"] == []
    # A low group cut checks the digit; the tags' 0.5 leaves loud (0.2) out.
    assert choices(tasks({5: 0.5}, {5: 0.3})[0]) == ["d3"]
    # Nothing reaches either cut: the best tag is named, as before.
    assert choices(tasks({5: 0.5}, {5: 0.9})[0]) == ["d3"]


def _strict_loads(text: str) -> Any:
    """JSON as a strict reader takes it: a bare NaN, Infinity or -Infinity is an error."""

    def refuse(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def _non_finite_rows() -> list[ExportRow]:
    """Numbers JSON cannot hold, as rows stored before the API refused them could carry."""
    inf, nan = float("inf"), float("nan")
    return [
        ExportRow(
            clip_id=1,
            video_id=1,
            video_filename="a.mp4",
            start_s=0.0,
            end_s=inf,
            labels=[
                ExportLabel(id=1, annotator="a", tags=["cat"], seconds_spent=inf, created_at=T0),
                ExportLabel(id=2, annotator="b", tags=["cat"], seconds_spent=-inf, created_at=T0),
            ],
            prediction=ExportPrediction(
                model_version_id=3,
                top_tags=[{"tag": "cat", "p": nan}, {"tag": "dog", "p": 0.5}],
                uncertainty=nan,
                created_at=T0,
            ),
        )
    ]


def test_every_export_format_is_strict_json_even_for_non_finite_numbers() -> None:
    """Issue 20: a stored ``seconds_spent`` of Infinity came out as a bare ``Infinity``."""
    (record,) = [_strict_loads(line) for line in format_jsonl(_non_finite_rows())]
    assert [lb["seconds_spent"] for lb in record["labels"]] == [None, None]
    assert record["end_s"] is None and record["prediction"]["uncertainty"] is None
    assert record["prediction"]["top_tags"][0]["p"] is None

    (task,) = _strict_loads("".join(format_label_studio(_non_finite_rows(), media_url=_media)))
    assert [a["lead_time"] for a in task["annotations"]] == [None, None]
    assert task["data"]["end_s"] is None
    assert task["predictions"][0]["score"] in (None, 0.5)

    text = "".join(format_csv(_non_finite_rows()))
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert row["end_s"] == "" and row["uncertainty"] == ""
    assert row["predicted_tags"] == "cat:|dog:0.5"
    assert "inf" not in text.lower() and "nan" not in text.lower()


def test_parse_keeps_lead_times_for_the_label_check() -> None:
    """Out-of-range lead times are no longer dropped silently: the import's label check
    refuses them with the task named (an integer too big for a float is infinite)."""
    result = [{"type": "choices", "value": {"choices": ["cat"]}}]
    tasks = [
        {"data": {"clip_id": 1}, "annotations": [{"result": result, "lead_time": lead}]}
        for lead in [float("inf"), 10**400, -1, True, "5"]
    ]
    parsed = parse_label_studio(tasks)
    assert [lb.seconds_spent for lb in parsed] == [float("inf"), float("inf"), -1.0, None, None]
    assert [lb.task for lb in parsed] == [0, 1, 2, 3, 4]


def test_parse_caps_the_tasks_of_one_import() -> None:
    task = {"data": {"clip_id": 1}, "annotations": []}
    assert parse_label_studio([task] * 3, max_tasks=3) == []
    with pytest.raises(InvalidInput) as err:
        parse_label_studio([task] * 4, max_tasks=3)
    assert err.value.code == "too_many_tasks"
