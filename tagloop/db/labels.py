"""Label repository: an annotator's tag set for one clip. Never commits.

One label per (clip, annotator): several annotators may label a clip, and an annotator's new
label replaces their old one, which moves to ``label_history``. A label is validated
(``check_label``: the annotator's name, the tags, ``seconds_spent``) before anything is
written, so a bad submit stores nothing; the label route and the Label Studio import share
that check.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tagloop.db import tags as tag_repo
from tagloop.db.models import Label, LabelHistory
from tagloop.db.videos import get_clip
from tagloop.errors import Conflict, InvalidInput

# A label names a handful of tags; far more is a broken or hostile client, refused before
# any lookup.
MAX_TAGS_PER_LABEL = 200
# The annotator column's width; names come from tokens or a Label Studio export.
MAX_ANNOTATOR = 128
# Time on one clip: bounded, and generous, since Label Studio's lead_time keeps counting
# while a tab is left open overnight.
MAX_SECONDS_SPENT = 7 * 86_400.0


class UnknownTags(InvalidInput):
    """Some submitted tag names are not in the vocabulary; ``names`` lists them."""

    code = "unknown_tag"

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__(
            f"unknown tags: {', '.join(names)} (create them first with POST /api/v1/tags)"
        )
        self.names = list(names)


def validate_tag_set(session: Session, names: Sequence[str]) -> list[str]:
    """The tags' canonical names (as the tag table spells them), de-duplicated, in submit
    order: names match tags ignoring case and spacing, so "DOG" is stored as "dog".

    Raises ``too_many_tags`` past ``MAX_TAGS_PER_LABEL`` names, ``invalid_tag_name``,
    ``UnknownTags`` (unknown_tag) or ``conflicting_tags`` when two tags of one
    mutually-exclusive group are both present.
    """
    if len(names) > MAX_TAGS_PER_LABEL:
        raise InvalidInput(
            f"a label has at most {MAX_TAGS_PER_LABEL} tags, got {len(names)}",
            code="too_many_tags",
        )
    asked: list[str] = []
    for raw in names:
        name = tag_repo.normalize_name(raw)
        if name not in asked:
            asked.append(name)
    known = tag_repo.find_tags(session, asked)
    unknown = [n for n in asked if n not in known]
    if unknown:
        raise UnknownTags(unknown)
    clean: list[str] = []
    for name in asked:
        if known[name].name not in clean:
            clean.append(known[name].name)
    groups = {t.name: t.group for t in known.values()}
    by_group: dict[str, list[str]] = {}
    for name in clean:
        group = groups[name]
        if group is not None:
            by_group.setdefault(group, []).append(name)
    clashes = {g: ns for g, ns in by_group.items() if len(ns) > 1}
    if clashes:
        detail = "; ".join(f"{g}: {', '.join(ns)}" for g, ns in sorted(clashes.items()))
        raise InvalidInput(
            f"tags of one group are mutually exclusive, pick one per group ({detail})",
            code="conflicting_tags",
        )
    return clean


def check_annotator(name: str) -> str:
    """The annotator's name, trimmed. ``invalid_annotator`` when empty, longer than
    ``MAX_ANNOTATOR`` characters, or holding control characters, NUL or lone surrogates."""
    clean = name.strip()
    if not clean:
        raise InvalidInput("an annotator name must not be empty", code="invalid_annotator")
    if len(clean) > MAX_ANNOTATOR:
        raise InvalidInput(
            f"an annotator name is at most {MAX_ANNOTATOR} characters, got {len(clean)}",
            code="invalid_annotator",
        )
    if tag_repo.unstorable(clean) or any(unicodedata.category(c) == "Cc" for c in clean):
        raise InvalidInput(
            "an annotator name must not hold control characters", code="invalid_annotator"
        )
    return clean


def check_seconds_spent(value: float | None) -> float | None:
    """``value`` when it is None or a finite number in 0 .. ``MAX_SECONDS_SPENT``, else
    ``invalid_seconds_spent`` (JSON has no Infinity, and exports must stay JSON)."""
    if value is None:
        return None
    if not math.isfinite(value) or not 0.0 <= value <= MAX_SECONDS_SPENT:
        raise InvalidInput(
            f"seconds_spent must be a number from 0 to {MAX_SECONDS_SPENT:g}, got {value!r}",
            code="invalid_seconds_spent",
        )
    return float(value)


@dataclass(frozen=True)
class CheckedLabel:
    """A label that passed ``check_label``: the tags as the tag table spells them."""

    annotator: str
    tags: list[str]
    seconds_spent: float | None


def check_label(
    session: Session, *, annotator: str, tags: Sequence[str], seconds_spent: float | None
) -> CheckedLabel:
    """Everything about a label but its clip, as the label route and the Label Studio import
    both need it: ``invalid_annotator``, ``invalid_seconds_spent``, and the tag rules of
    ``validate_tag_set`` (``too_many_tags``, ``invalid_tag_name``, ``unknown_tag``,
    ``conflicting_tags``)."""
    return CheckedLabel(
        annotator=check_annotator(annotator),
        seconds_spent=check_seconds_spent(seconds_spent),
        tags=validate_tag_set(session, tags),
    )


# What store_label did: a first label of this annotator on the clip, a replacement of a
# different earlier one, or nothing (the same tags and time were stored already).
LabelOutcome = Literal["created", "replaced", "unchanged"]


def store_label(
    session: Session, *, clip_id: int, label: CheckedLabel
) -> tuple[Label, LabelOutcome]:
    """Store a checked label on a clip that exists, replacing the annotator's earlier label
    of that clip (moved to ``label_history``). A replacement gets a new id, so it counts as
    a new label for the loop and is the newest one of its clip; a label equal to the stored
    one changes nothing (a re-imported export does not count its labels again).
    ``label_conflict`` (409) when a concurrent request stored the same annotator's label of
    the clip first."""
    old = session.scalar(
        select(Label).where(Label.clip_id == clip_id, Label.annotator == label.annotator)
    )
    if old is not None:
        if list(old.tags) == label.tags and old.seconds_spent == label.seconds_spent:
            return old, "unchanged"
        session.add(
            LabelHistory(
                label_id=old.id,
                clip_id=old.clip_id,
                annotator=old.annotator,
                tags=list(old.tags),
                seconds_spent=old.seconds_spent,
                created_at=old.created_at,
            )
        )
        session.delete(old)
        session.flush()
    row = Label(
        clip_id=clip_id,
        annotator=label.annotator,
        tags=label.tags,
        seconds_spent=label.seconds_spent,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(
            "another request stored this annotator's label of the clip at the same time",
            code="label_conflict",
        ) from exc
    return row, "created" if old is None else "replaced"


def create_label(
    session: Session,
    *,
    clip_id: int,
    annotator: str,
    tags: Sequence[str],
    seconds_spent: float | None = None,
) -> Label:
    """Check and store a label (``check_label``, ``store_label``); ``clip_not_found`` (404)
    for an unknown clip."""
    get_clip(session, clip_id)
    checked = check_label(session, annotator=annotator, tags=tags, seconds_spent=seconds_spent)
    return store_label(session, clip_id=clip_id, label=checked)[0]


def latest_labels(session: Session) -> dict[int, list[str]]:
    """Clip id -> the tag set of its most recent label (the one training believes)."""
    out: dict[int, list[str]] = {}
    for clip_id, tags in session.execute(select(Label.clip_id, Label.tags).order_by(Label.id)):
        out[int(clip_id)] = [str(t) for t in tags]
    return out


def count_labels(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Label)) or 0)
