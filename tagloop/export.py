"""Export labels and predictions (JSONL, CSV, Label Studio tasks) and read Label Studio exports.

Pure formatting: rows come in as ``ExportRow`` (built by ``tagloop.db.stats``), text goes out
in chunks so a route can stream millions of clips without holding them in memory.

Label Studio tasks follow its documented JSON task format: ``data`` names the media,
``annotations`` and ``predictions`` hold ``choices`` results whose ``from_name`` is ``"tags"``
and ``to_name`` ``"video"``, matching this labeling config::

    <View>
      <Video name="video" value="$video"/>
      <Choices name="tags" toName="video" choice="multiple">...</Choices>
    </View>
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tagloop.db.models import MAX_ID
from tagloop.errors import InvalidInput
from tagloop.suggestions import prechecked_tags
from tagloop.training.thresholds import DEFAULT_THRESHOLD

FROM_NAME = "tags"
TO_NAME = "video"
CSV_COLUMNS = (
    "clip_id",
    "video_id",
    "video_filename",
    "start_s",
    "end_s",
    "n_labels",
    "label_tags",
    "annotators",
    "model_version",
    "predicted_tags",
    "uncertainty",
    # Appended, so readers that index the columns above by position keep working.
    "split",
    "needs_review",
    "n_skips",
    "skips",
)


@dataclass(frozen=True)
class ExportLabel:
    id: int
    annotator: str
    tags: list[str]
    seconds_spent: float | None
    created_at: datetime


@dataclass(frozen=True)
class ExportPrediction:
    model_version_id: int
    top_tags: list[dict[str, Any]]  # [{"tag", "p"}] best first, as the scorer stored them
    uncertainty: float | None
    created_at: datetime


@dataclass(frozen=True)
class ExportSkip:
    """Someone was offered the clip and gave it back unlabeled, maybe saying why."""

    annotator: str
    reason: str | None  # unclear, not_applicable, free text, or None
    skipped_at: datetime | None  # None for skips recorded before skip times were kept


@dataclass(frozen=True)
class ExportRow:
    """One clip with its labels (oldest first), its latest prediction, its skips (oldest
    first), its split (``pool`` or ``holdout``) and whether it is parked for review."""

    clip_id: int
    video_id: int
    video_filename: str
    start_s: float
    end_s: float
    labels: list[ExportLabel] = field(default_factory=list)
    prediction: ExportPrediction | None = None
    split: str = "pool"
    needs_review: bool = False
    skips: list[ExportSkip] = field(default_factory=list)


@dataclass(frozen=True)
class ImportedLabel:
    """A label read from a Label Studio export, not yet checked (``labels.check_label``):
    ``task`` and ``annotation`` say where it was, for per-task errors."""

    clip_id: int
    annotator: str
    tags: list[str]
    seconds_spent: float | None
    task: int = 0
    annotation: int = 0


def _iso(ts: datetime) -> str:
    return ts.isoformat()


def finite_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float made None: JSON has no such numbers, and a
    strict reader (or Label Studio) refuses the bare ``Infinity`` Python would write."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def dump_json(value: Any, **options: Any) -> str:
    """Strict JSON text of ``value`` (non-finite numbers as null, never bare ``NaN``)."""
    return json.dumps(finite_json(value), ensure_ascii=False, allow_nan=False, **options)


def _csv_number(value: float | None) -> object:
    return "" if value is None or not math.isfinite(value) else value


def skip_records(skips: Iterable[ExportSkip]) -> list[dict[str, Any]]:
    """The skips as JSON-ready dicts: ``{"annotator", "reason", "skipped_at"}``."""
    return [
        {
            "annotator": sk.annotator,
            "reason": sk.reason,
            "skipped_at": None if sk.skipped_at is None else _iso(sk.skipped_at),
        }
        for sk in skips
    ]


def to_record(row: ExportRow) -> dict[str, Any]:
    """The JSON-ready record of one clip (a JSONL line)."""
    pred = row.prediction
    return {
        "clip_id": row.clip_id,
        "video_id": row.video_id,
        "video_filename": row.video_filename,
        "start_s": row.start_s,
        "end_s": row.end_s,
        "labels": [
            {
                "id": lb.id,
                "annotator": lb.annotator,
                "tags": list(lb.tags),
                "seconds_spent": lb.seconds_spent,
                "created_at": _iso(lb.created_at),
            }
            for lb in row.labels
        ],
        "prediction": None
        if pred is None
        else {
            "model_version": pred.model_version_id,
            "top_tags": list(pred.top_tags),
            "uncertainty": pred.uncertainty,
            "created_at": _iso(pred.created_at),
        },
        "split": row.split,
        "needs_review": row.needs_review,
        "skips": skip_records(row.skips),
    }


def format_jsonl(rows: Iterable[ExportRow]) -> Iterator[str]:
    """One JSON object per line, per clip."""
    for row in rows:
        yield dump_json(to_record(row)) + "\n"


def _csv_line(values: Iterable[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(list(values))
    return buffer.getvalue()


def format_csv(rows: Iterable[ExportRow]) -> Iterator[str]:
    """A header, then one line per clip: the latest label's tags joined by ``|``, every
    annotator, the prediction as ``tag:p`` pairs joined by ``|``, the split, ``true`` /
    ``false`` for parked, and the skips as a compact JSON list (a reason is free text that
    may hold ``|`` or ``:``, so only JSON keeps it intact)."""
    yield _csv_line(CSV_COLUMNS)
    for row in rows:
        latest = row.labels[-1].tags if row.labels else []
        annotators = sorted({lb.annotator for lb in row.labels})
        pred = row.prediction
        yield _csv_line(
            [
                row.clip_id,
                row.video_id,
                row.video_filename,
                _csv_number(row.start_s),
                _csv_number(row.end_s),
                len(row.labels),
                "|".join(latest),
                "|".join(annotators),
                "" if pred is None else pred.model_version_id,
                ""
                if pred is None
                else "|".join(f"{t['tag']}:{_csv_number(float(t['p']))}" for t in pred.top_tags),
                "" if pred is None else _csv_number(pred.uncertainty),
                row.split,
                "true" if row.needs_review else "false",
                len(row.skips),
                dump_json(skip_records(row.skips), separators=(",", ":")) if row.skips else "",
            ]
        )


def _choices_result(tags: list[str], *, result_id: str) -> list[dict[str, Any]]:
    return [
        {
            "id": result_id,
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "type": "choices",
            "value": {"choices": list(tags)},
        }
    ]


def predicted_choices(
    top_tags: list[dict[str, Any]],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    groups: Mapping[str, str | None] | None = None,
    group_threshold: float | None = None,
) -> list[str]:
    """The tags a prediction would check, as the Label page pre-checks them
    (``suggestions.prechecked_tags``; ``groups``: tag -> group, None: all independent),
    else the best one."""
    chosen = prechecked_tags(
        top_tags, groups=groups or {}, threshold=threshold, group_threshold=group_threshold
    )
    if not chosen and top_tags:
        chosen = [str(max(top_tags, key=lambda t: float(t["p"]))["tag"])]
    return chosen


def to_label_studio_task(
    row: ExportRow,
    *,
    media_url: Callable[[int], str],
    threshold: float = DEFAULT_THRESHOLD,
    groups: Mapping[str, str | None] | None = None,
    group_threshold: float | None = None,
) -> dict[str, Any]:
    """One Label Studio task. The prediction's ``score`` is its top probability (Label Studio
    sorts by it as a confidence; tagloop's uncertainty is strategy-specific and unbounded).
    The split, the parked flag and the skips go in the task's ``meta``, which Label Studio
    keeps with the task but does not show to the labeling config. A holdout clip gets no
    prediction: Label Studio shows predictions as pre-annotations, and the holdout's labels
    grade the model, so they must not lean on its guesses (the Label page pre-checks nothing
    there either; the JSONL and CSV exports keep the prediction)."""
    task: dict[str, Any] = {
        "id": row.clip_id,
        "data": {
            TO_NAME: media_url(row.clip_id),
            "clip_id": row.clip_id,
            "video_id": row.video_id,
            "video_filename": row.video_filename,
            "start_s": row.start_s,
            "end_s": row.end_s,
        },
        "annotations": [
            {
                "id": lb.id,
                "completed_by": lb.annotator,
                "created_at": _iso(lb.created_at),
                "lead_time": lb.seconds_spent,
                "was_cancelled": False,
                "result": _choices_result(lb.tags, result_id=f"label-{lb.id}"),
            }
            for lb in row.labels
        ],
        "predictions": [],
        "meta": {
            "split": row.split,
            "needs_review": row.needs_review,
            "skips": skip_records(row.skips),
        },
    }
    pred = row.prediction
    if pred is not None and row.split != "holdout":
        top = max((float(t["p"]) for t in pred.top_tags), default=0.0)
        task["predictions"].append(
            {
                "model_version": f"v{pred.model_version_id}",
                "score": top,
                "result": _choices_result(
                    predicted_choices(
                        pred.top_tags,
                        threshold=threshold,
                        groups=groups,
                        group_threshold=group_threshold,
                    ),
                    result_id=f"pred-{row.clip_id}-{pred.model_version_id}",
                ),
            }
        )
    return task


def format_label_studio(
    rows: Iterable[ExportRow],
    *,
    media_url: Callable[[int], str],
    thresholds: Mapping[int, float] | None = None,
    groups: Mapping[str, str | None] | None = None,
    group_thresholds: Mapping[int, float] | None = None,
) -> Iterator[str]:
    """A JSON array of Label Studio tasks, streamed one task at a time. A prediction checks
    its tags as the Label page pre-checks them: at its version's threshold in ``thresholds``
    (version id -> the one fitted on the holdout; else 0.5), at most one tag per group of
    ``groups`` (tag -> group), a group's at its version's cut in ``group_thresholds``."""
    yield "["
    for i, row in enumerate(rows):
        version = None if row.prediction is None else row.prediction.model_version_id
        fitted = None if version is None else (thresholds or {}).get(version)
        threshold = DEFAULT_THRESHOLD if fitted is None else fitted
        task = to_label_studio_task(
            row,
            media_url=media_url,
            threshold=threshold,
            groups=groups,
            group_threshold=None if version is None else (group_thresholds or {}).get(version),
        )
        yield ("," if i else "") + "\n" + dump_json(task)
    yield "\n]\n"


def _bad(message: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_label_studio_export")


def _clip_id(task: dict[str, Any], position: int) -> int:
    data = task.get("data")
    raw = data.get("clip_id") if isinstance(data, dict) else None
    if isinstance(raw, bool) or raw is None:
        raise _bad(f"task {position} has no data.clip_id (export tasks from tagloop first)")
    try:
        clip_id = int(raw)
    except (TypeError, ValueError) as exc:
        raise _bad(f"task {position}: data.clip_id {raw!r} is not a clip id") from exc
    if not 1 <= clip_id <= MAX_ID:  # no clip has it, and the database cannot bind it
        raise _bad(f"task {position}: data.clip_id {raw!r} is not a clip id")
    return clip_id


def _annotator(annotation: dict[str, Any]) -> str:
    """Label Studio's ``completed_by`` is a user id, a user object or (from tagloop) a name."""
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("username") or who.get("id")
        if isinstance(who, str) and who:
            return who
    if isinstance(who, str) and who.strip():
        return who.strip()
    if isinstance(who, int) and not isinstance(who, bool):
        return f"label-studio:{who}"
    return "label-studio"


def _choices(annotation: dict[str, Any], where: str) -> list[str] | None:
    """The union of the annotation's ``choices`` results, or None when it has none."""
    result = annotation.get("result")
    if not isinstance(result, list):
        raise _bad(f"{where}: 'result' must be a list")
    tags: list[str] | None = None
    for item in result:
        if not isinstance(item, dict) or item.get("type") != "choices":
            continue
        value = item.get("value")
        choices = value.get("choices") if isinstance(value, dict) else None
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            raise _bad(f"{where}: a choices result needs value.choices as a list of names")
        tags = tags or []
        tags.extend(c for c in choices if c not in tags)
    return tags


def _lead_time(raw: object) -> float | None:
    """Label Studio's ``lead_time`` as a float (an integer too large for one is infinite, for
    the label check to refuse), None when it is not a number."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    try:
        return float(raw)
    except OverflowError:
        return math.inf


def parse_label_studio(tasks: object, *, max_tasks: int | None = None) -> list[ImportedLabel]:
    """Labels from a Label Studio JSON export (a list of tasks).

    Every non-cancelled annotation with a ``choices`` result becomes one label of the clip
    named by ``data.clip_id``; ``lead_time`` becomes ``seconds_spent`` as given (the label
    check refuses one that is not finite or out of range). Raises
    ``invalid_label_studio_export`` for anything that is not such an export, and
    ``too_many_tasks`` past ``max_tasks`` tasks.
    """
    if not isinstance(tasks, list):
        raise _bad("a Label Studio export is a JSON list of tasks")
    if max_tasks is not None and len(tasks) > max_tasks:
        raise InvalidInput(
            f"one import takes at most {max_tasks} tasks, got {len(tasks)}; split the file",
            code="too_many_tasks",
        )
    labels: list[ImportedLabel] = []
    for position, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise _bad(f"task {position} is not an object")
        clip_id = _clip_id(task, position)
        annotations = task.get("annotations") or []
        if not isinstance(annotations, list):
            raise _bad(f"task {position}: 'annotations' must be a list")
        for k, annotation in enumerate(annotations):
            where = f"task {position} annotation {k}"
            if not isinstance(annotation, dict):
                raise _bad(f"{where} is not an object")
            if annotation.get("was_cancelled"):
                continue
            tags = _choices(annotation, where)
            if tags is None:
                continue
            lead = _lead_time(annotation.get("lead_time"))
            labels.append(
                ImportedLabel(
                    clip_id=clip_id,
                    annotator=_annotator(annotation),
                    tags=tags,
                    seconds_spent=lead,
                    task=position,
                    annotation=k,
                )
            )
    return labels
