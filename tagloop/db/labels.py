"""Label repository: an annotator's tag set for one clip. Never commits.

Several labels per clip are allowed (several annotators, or the same one again). A label is
validated against the tag table before anything is written, so a bad submit stores nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tagloop.db import tags as tag_repo
from tagloop.db.models import Label, Tag
from tagloop.db.videos import get_clip
from tagloop.errors import InvalidInput

# A label names a handful of tags; far more is a broken or hostile client, refused before
# any lookup.
MAX_TAGS_PER_LABEL = 200


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


def validate_unsure_groups(
    session: Session, names: Sequence[str], *, tags: Sequence[str]
) -> list[str]:
    """The groups a label marks unsure, as the tag table spells them (matched ignoring case and
    spacing), de-duplicated, in submit order. ``tags``: the label's canonical tag names.

    Raises ``too_many_groups`` past ``MAX_TAGS_PER_LABEL`` names, ``unknown_group`` when a
    name is no tag's group, ``conflicting_unsure_group`` when the label also chose a tag of
    that group (chosen and unsure at once says nothing).
    """
    if len(names) > MAX_TAGS_PER_LABEL:
        raise InvalidInput(
            f"a label marks at most {MAX_TAGS_PER_LABEL} groups unsure, got {len(names)}",
            code="too_many_groups",
        )
    if not names:
        return []
    existing = {
        tag_repo.tag_key(g): str(g)
        for g in session.scalars(select(Tag.group).where(Tag.group.is_not(None)).distinct())
        if g is not None
    }
    clean: list[str] = []
    unknown: list[str] = []
    for raw in names:
        group = existing.get(tag_repo.tag_key(raw))
        if group is None:
            unknown.append(raw)
        elif group not in clean:
            clean.append(group)
    if unknown:
        raise InvalidInput(
            f"unknown tag groups: {', '.join(unknown)} (unsure_groups names groups of existing "
            "tags)",
            code="unknown_group",
        )
    chosen = {t.group for t in tag_repo.find_tags(session, tags).values() if t.group}
    both = [g for g in clean if g in chosen]
    if both:
        raise InvalidInput(
            f"groups both chosen and unsure: {', '.join(both)}; drop the tag or the unsure mark",
            code="conflicting_unsure_group",
        )
    return clean


def create_label(
    session: Session,
    *,
    clip_id: int,
    annotator: str,
    tags: Sequence[str],
    seconds_spent: float | None = None,
    unsure_groups: Sequence[str] = (),
) -> Label:
    """Validate and store a label; ``clip_not_found`` (404) for an unknown clip.
    ``unsure_groups``: groups the annotator was unsure of (``validate_unsure_groups``); every
    other group with no chosen tag means "none of these" (``training.targets``)."""
    get_clip(session, clip_id)
    if seconds_spent is not None and seconds_spent < 0:
        raise InvalidInput("seconds_spent must not be negative", code="invalid_seconds_spent")
    clean = validate_tag_set(session, tags)
    unsure = validate_unsure_groups(session, unsure_groups, tags=clean)
    label = Label(
        clip_id=clip_id,
        annotator=annotator,
        tags=clean,
        seconds_spent=seconds_spent,
        unsure_groups=unsure,
    )
    session.add(label)
    session.flush()
    return label


def latest_labels(session: Session) -> dict[int, list[str]]:
    """Clip id -> the tag set of its most recent label (the one training believes)."""
    out: dict[int, list[str]] = {}
    for clip_id, tags in session.execute(select(Label.clip_id, Label.tags).order_by(Label.id)):
        out[int(clip_id)] = [str(t) for t in tags]
    return out


def latest_unsure_groups(session: Session) -> dict[int, list[str]]:
    """Clip id -> the groups its most recent label marked unsure, for clips where there are
    any (``build_targets(..., unsure_groups=...)`` leaves those groups unknown)."""
    out: dict[int, list[str]] = {}
    rows = session.execute(select(Label.clip_id, Label.unsure_groups).order_by(Label.id))
    for clip_id, groups in rows:
        out[int(clip_id)] = [str(g) for g in groups or []]
    return {c: g for c, g in out.items() if g}


def count_labels(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Label)) or 0)
