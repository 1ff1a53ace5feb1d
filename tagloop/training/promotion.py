"""Promotion on small data: compare the new and the promoted version on the same clips, and
say how sure the comparison is.

A round's validation split holds a handful of clips early on (13 in one reported case), so
a difference of a few points is noise. The comparison runs on the holdout when it has enough
labeled clips (never trained on by either version), else on the round's validation clips,
and a paired bootstrap over those clips gives a 95 % interval for the score difference. The
rule itself is unchanged (promote unless worse by more than the tolerance); the interval is
reported next to the decision so a person can see when it was a coin toss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tagloop.training.loop import selection_score
from tagloop.training.metrics import evaluate_predictions
from tagloop.vocabulary import TagVocabulary

N_BOOT = 200


@dataclass(frozen=True)
class Comparison:
    """New minus promoted score on ``n_clips`` clips of ``on`` (holdout or validation)."""

    on: str
    n_clips: int
    new_score: float | None
    old_score: float | None
    delta: float | None
    ci95: tuple[float, float] | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ci95"] = list(self.ci95) if self.ci95 is not None else None
        return out

    def describe(self) -> str:
        if self.delta is None:
            return f"on {self.n_clips} {self.on} clips"
        ci = f" [{self.ci95[0]:+.3f}, {self.ci95[1]:+.3f}]" if self.ci95 else ""
        return f"delta {self.delta:+.3f}{ci} on {self.n_clips} {self.on} clips"


def _score(
    probs: np.ndarray, targets: np.ndarray, known: np.ndarray, vocab: TagVocabulary
) -> float | None:
    value = selection_score(evaluate_predictions(probs, targets, known, vocab=vocab))
    return None if value is None else float(value)


def compare_versions(
    new_probs: np.ndarray,
    old_probs: np.ndarray | None,
    targets: np.ndarray,
    known: np.ndarray,
    *,
    vocab: TagVocabulary,
    on: str,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> Comparison:
    """Scores of both versions on the same clips and a paired bootstrap 95 % interval of
    their difference.

    new_probs, old_probs: ``(N, K)`` over ``vocab`` (the promoted version's tags); targets,
    known: ``(N, K)``. old_probs None: nothing promoted yet (no difference to report).
    """
    n = int(targets.shape[0])
    new = _score(new_probs, targets, known, vocab) if n else None
    if old_probs is None or n == 0:
        return Comparison(on, n, new, None, None, None)
    old = _score(old_probs, targets, known, vocab)
    if new is None or old is None:
        return Comparison(on, n, new, old, None, None)
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, size=n)
        a = _score(new_probs[idx], targets[idx], known[idx], vocab)
        b = _score(old_probs[idx], targets[idx], known[idx], vocab)
        if a is not None and b is not None:
            deltas.append(a - b)
    ci = (float(np.percentile(deltas, 2.5)), float(np.percentile(deltas, 97.5))) if deltas else None
    return Comparison(on, n, new, old, new - old, ci)
