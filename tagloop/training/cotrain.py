"""Co-training across modalities: pseudo-labels from a confident view for an unsure one (pure
numpy, no I/O).

Each unimodal head (``visual``, ``audio``) predicts every decision on its own. Where one head
is sure and the other is not, the sure one teaches: its answer becomes a pseudo-label that
trains the fused model and the unsure head next round. Pseudo-labels are kept apart from
human labels (their own table, never exported as labels, ``"kind": "pseudo"`` in the API).

A *decision* is one tag group on one clip (which of the group's tags it is: softmax) or one
ungrouped tag on one clip (yes or no: sigmoid). A view's confidence in a decision is

- group: its top probability within the group, answering with that tag;
- ungrouped tag with probability ``p``: ``max(p, 1 - p)``, answering yes when ``p >= 0.5``.
  So "confident" means ``p >= confident`` (a confident yes) or ``p <= 1 - confident`` (a
  confident no), and "unsure" means ``1 - unsure < p < unsure``.

The rule, per clip and decision: view ``m`` teaches when its confidence is ``>= confident``
and *every other* view is present on that clip with confidence ``< unsure``. Hence

- both views unsure, or both in between: nothing;
- both confident, agreeing or not: nothing (the other view has nothing to learn, and a
  disagreement between two sure views is not something to resolve by vote);
- a clip missing a modality (no audio track) is skipped: its absent view has no opinion
  to correct and cannot learn from it (its head is masked there), so a pseudo-label would
  only be the present view teaching itself (self-training, which confirms its mistakes).

With more than two views the same rule holds (one confident teacher, all others unsure).
A model without unimodal heads (a baseline) gives fewer than two views: no pseudo-labels.

Callers pass the clips that may be pseudo-labeled (the unlabeled pool, not the holdout);
this module knows nothing of human labels.

Caps, applied greedily from the most confident decision down (ties: lower clip id first,
then vocabulary column, then modality name, so the outcome is deterministic):
``max_per_round`` distinct clips per call, and ``max_per_class`` decisions per class, where
a class is a tag answered yes (a group's tag or an ungrouped yes) or an ungrouped tag
answered no. Decisions on a clip already taken still count against their class cap but
not against the clip cap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from tagloop.errors import InvalidInput
from tagloop.vocabulary import TagVocabulary


@dataclass(frozen=True)
class CotrainOptions:
    """Thresholds and caps of one co-training selection.

    confident: a view's confidence at or above this teaches, in ``(0.5, 1]``.
    unsure: a view's confidence below this may be taught, in ``(0, confident]``.
    max_per_round: at most this many distinct clips get pseudo-labels per call (``>= 0``).
    max_per_class: per class (see the module docstring), an ``int >= 1`` is a count; a
        ``float`` in ``(0, 1]`` is a share of ``max_per_round`` (rounded up), so no one tag
        floods the round.
    """

    confident: float = 0.9
    unsure: float = 0.6
    max_per_round: int = 500
    max_per_class: int | float = 0.25

    def __post_init__(self) -> None:
        for name in ("confident", "unsure"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInput(f"{name} must be a number", code="bad_cotrain_options")
        # Written as "not (in range)" so NaN is refused too.
        if not 0.5 < self.confident <= 1.0:
            raise InvalidInput(
                f"confident must be in (0.5, 1], got {self.confident}", code="bad_cotrain_options"
            )
        if not 0.0 < self.unsure <= self.confident:
            raise InvalidInput(
                f"unsure must be in (0, confident={self.confident}], got {self.unsure}",
                code="bad_cotrain_options",
            )
        if (
            isinstance(self.max_per_round, bool)
            or not isinstance(self.max_per_round, int)
            or self.max_per_round < 0
        ):
            raise InvalidInput(
                f"max_per_round must be an int >= 0, got {self.max_per_round!r}",
                code="bad_cotrain_options",
            )
        cap = self.max_per_class
        if isinstance(cap, bool) or not isinstance(cap, int | float):
            raise InvalidInput(
                f"max_per_class must be an int or a float, got {cap!r}", code="bad_cotrain_options"
            )
        if isinstance(cap, int) and cap < 1:
            raise InvalidInput(
                f"max_per_class as a count must be >= 1, got {cap}", code="bad_cotrain_options"
            )
        if isinstance(cap, float) and not 0.0 < cap <= 1.0:
            raise InvalidInput(
                f"max_per_class as a share must be in (0, 1], got {cap}",
                code="bad_cotrain_options",
            )

    @property
    def class_cap(self) -> int:
        """``max_per_class`` as a count of decisions."""
        if isinstance(self.max_per_class, float):
            return math.ceil(self.max_per_class * self.max_per_round)
        return self.max_per_class


@dataclass(frozen=True)
class PseudoLabel:
    """What one view taught about one clip.

    tags: the tags it says apply (one per group it decided, plus ungrouped yeses), in
        vocabulary order. negative_tags: ungrouped tags it says do not apply.
    source: the teaching modality. confidence: its confidence in the weakest of these
        decisions. A clip may get one pseudo-label per teaching view (each decided
        different things, since two views never both teach one decision).
    """

    clip_id: int
    tags: list[str]
    source: str
    confidence: float
    negative_tags: list[str] = field(default_factory=list)


def _check_inputs(
    modality_probs: Mapping[str, np.ndarray],
    present: Mapping[str, np.ndarray],
    clip_ids: np.ndarray,
    *,
    vocab: TagVocabulary,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """-> (modality names sorted, probs (M, N, K) float64, all present (N,) bool, ids (N,))."""
    ids = np.asarray(clip_ids)
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise InvalidInput(
            f"clip_ids must be a 1-d integer array, got {ids.dtype} {ids.shape}",
            code="bad_cotrain_input",
        )
    ids = ids.astype(np.int64)
    if np.unique(ids).size != ids.size:
        raise InvalidInput("clip_ids must be unique", code="bad_cotrain_input")
    n, k = ids.size, len(vocab)
    names = sorted(modality_probs)
    stacked = np.empty((len(names), n, k), dtype=np.float64)
    everywhere = np.ones(n, dtype=bool)
    for i, name in enumerate(names):
        probs = np.asarray(modality_probs[name])
        if probs.shape != (n, k):
            raise InvalidInput(
                f"modality_probs[{name!r}] must be ({n}, {k}), got {probs.shape}",
                code="bad_cotrain_input",
            )
        stacked[i] = probs
        mask = present.get(name)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != (n,) or mask.dtype != bool:
                raise InvalidInput(
                    f"present[{name!r}] must be ({n},) bool, got {mask.dtype} {mask.shape}",
                    code="bad_cotrain_input",
                )
            everywhere &= mask
    return names, stacked, everywhere, ids


def _teachers(conf: np.ndarray, ok: np.ndarray, options: CotrainOptions) -> np.ndarray:
    """``conf (M, N)`` -> ``(M, N)`` bool: view m teaches clip n on this decision.

    Since unsure <= confident, a confident view is never unsure, so "every other view is
    unsure" is "M - 1 views are unsure". NaN is neither confident nor unsure.
    """
    confident = conf >= options.confident
    unsure = conf < options.unsure
    n_unsure = unsure.sum(axis=0)
    return confident & (n_unsure == conf.shape[0] - 1)[None, :] & ok[None, :]


def select_pseudo_labels(
    modality_probs: Mapping[str, np.ndarray],
    present: Mapping[str, np.ndarray],
    clip_ids: np.ndarray,
    *,
    vocab: TagVocabulary,
    options: CotrainOptions,
) -> list[PseudoLabel]:
    """Pseudo-labels by the rule and caps of the module docstring, most confident first.

    modality_probs: modality -> ``(N, K)`` probabilities of its head
        (``tagloop.training.loss.probabilities``: softmax per group, sigmoid otherwise).
    present: modality -> ``(N,)`` bool, whether the clip has that modality; a modality
        missing from the mapping is present everywhere (visual always is).
    clip_ids: ``(N,)`` unique ints, row n is clip ``clip_ids[n]``.
    """
    names, probs, ok, ids = _check_inputs(modality_probs, present, clip_ids, vocab=vocab)
    if len(names) < 2 or ids.size == 0 or options.max_per_round == 0:
        return []
    # Candidate decisions as parallel arrays: clip row, view, column, yes?, confidence.
    rows: list[np.ndarray] = []
    views: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    yes: list[np.ndarray] = []
    confs: list[np.ndarray] = []
    for columns in vocab.group_indices.values():
        sub = probs[:, :, columns]  # (M, N, G)
        top = np.argmax(sub, axis=2)  # (M, N)
        conf = np.take_along_axis(sub, top[:, :, None], axis=2)[:, :, 0]
        m, n = np.nonzero(_teachers(conf, ok, options))
        rows.append(n)
        views.append(m)
        cols.append(columns[top[m, n]])
        yes.append(np.ones(n.size, dtype=bool))
        confs.append(conf[m, n])
    for j in vocab.ungrouped_indices.tolist():
        p = probs[:, :, j]  # (M, N)
        conf = np.maximum(p, 1.0 - p)
        m, n = np.nonzero(_teachers(conf, ok, options))
        rows.append(n)
        views.append(m)
        cols.append(np.full(n.size, j, dtype=np.int64))
        yes.append(p[m, n] >= 0.5)
        confs.append(conf[m, n])
    if not rows:
        return []
    row = np.concatenate(rows)
    view = np.concatenate(views)
    col = np.concatenate(cols).astype(np.int64)
    positive = np.concatenate(yes)
    conf = np.concatenate(confs)
    # Most confident first; ties by clip id, column, modality name (names are sorted).
    order = np.lexsort((view, col, ids[row], -conf))
    return _apply_caps(
        row[order],
        view[order],
        col[order],
        positive[order],
        conf[order],
        ids=ids,
        names=names,
        vocab=vocab,
        options=options,
    )


def _apply_caps(
    row: np.ndarray,
    view: np.ndarray,
    col: np.ndarray,
    positive: np.ndarray,
    conf: np.ndarray,
    *,
    ids: np.ndarray,
    names: Sequence[str],
    vocab: TagVocabulary,
    options: CotrainOptions,
) -> list[PseudoLabel]:
    """Greedy over decisions in the given order; group the kept ones per (clip, view)."""
    class_cap = options.class_cap
    per_class: dict[tuple[int, bool], int] = {}
    taken: set[int] = set()
    kept: dict[tuple[int, int], list[tuple[int, bool, float]]] = {}
    for r, v, c, pos, p in zip(
        row.tolist(), view.tolist(), col.tolist(), positive.tolist(), conf.tolist(), strict=True
    ):
        if r not in taken and len(taken) >= options.max_per_round:
            continue
        key = (c, pos)
        if per_class.get(key, 0) >= class_cap:
            continue
        per_class[key] = per_class.get(key, 0) + 1
        taken.add(r)
        kept.setdefault((r, v), []).append((c, pos, p))
    out: list[PseudoLabel] = []
    for (r, v), decisions in kept.items():
        decisions.sort()
        out.append(
            PseudoLabel(
                clip_id=int(ids[r]),
                tags=[vocab.tags[c] for c, pos, _ in decisions if pos],
                negative_tags=[vocab.tags[c] for c, pos, _ in decisions if not pos],
                source=names[v],
                confidence=min(p for _, _, p in decisions),
            )
        )
    out.sort(key=lambda lb: (-lb.confidence, lb.clip_id, lb.source))
    return out


def build_pseudo_targets(
    labels: Sequence[PseudoLabel], *, vocab: TagVocabulary
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training rows for pseudo-labels, like ``targets.build_targets`` for human ones.

    Returns ``(clip_ids (C,) int64, targets (C, K) float32, known (C, K) bool)``, one row per
    distinct clip in first-seen order (a clip's pseudo-labels from several views are merged).
    Only what a pseudo-label decided is known: a group whose tag it names (that tag 1, the
    group's others 0), an ungrouped tag it names (1) or names as negative (0). Unlike a
    human label, silence about an ungrouped tag is not a no. Names not in ``vocab`` are
    ignored.
    """
    order: dict[int, int] = {}
    for lb in labels:
        order.setdefault(int(lb.clip_id), len(order))
    k = len(vocab)
    targets = np.zeros((len(order), k), dtype=np.float32)
    known = np.zeros((len(order), k), dtype=bool)
    group_of = {
        int(j): columns for columns in vocab.group_indices.values() for j in columns.tolist()
    }
    for lb in labels:
        i = order[int(lb.clip_id)]
        for name in lb.tags:
            j = vocab.index.get(name)
            if j is None:
                continue
            targets[i, j] = 1.0
            known[i, group_of.get(j, j)] = True
        for name in lb.negative_tags:
            j = vocab.index.get(name)
            if j is not None and j not in group_of:
                known[i, j] = True
    return np.fromiter(order, dtype=np.int64, count=len(order)), targets, known
