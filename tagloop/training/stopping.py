"""When to stop labeling: stabilizing predictions (Bloodgood and Vijay-Shanker, CoNLL 2009).

Each model version predicts a fixed set of unlabeled clips (the stop set). When consecutive
versions agree on it almost perfectly (Cohen's kappa at or above 0.99, three times in a row in
the paper), more labels are no longer changing the model. Pure numpy; the pipeline
(``tagloop.pipeline.stopping``) draws the stop set and stores the decisions.

A clip's decisions are the units the model predicts: each tag group contributes the one-hot of
its argmax (one decision per tag of the group) and each ungrouped tag ``p >= 0.5``.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np

from tagloop.errors import InvalidInput
from tagloop.none_outcome import likeliest_outcome
from tagloop.vocabulary import TagVocabulary


def cohens_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two binary decision vectors ``(M,)``: ``(p_o - p_e) / (1 - p_e)``.

    Degenerate case: when the chance agreement ``p_e`` is 1 (both raters constant and equal,
    e.g. every decision False in both) kappa is 0/0; we return 1.0, since the raters agree on
    every decision and the stopping rule asks whether predictions changed, which they did not.
    (Constant and different gives ``p_e = 0`` and kappa 0 by the formula; any other
    disagreement has ``p_e < 1``.) Raises ``InvalidInput`` on empty or mismatched input.
    """
    x = np.asarray(a, dtype=bool).ravel()
    y = np.asarray(b, dtype=bool).ravel()
    if x.shape != y.shape or x.size == 0:
        raise InvalidInput(
            f"kappa needs two non-empty decision vectors of one length; got {x.size} and {y.size}",
            code="bad_kappa_input",
        )
    observed = float(np.mean(x == y))
    px, py = float(np.mean(x)), float(np.mean(y))
    expected = px * py + (1.0 - px) * (1.0 - py)
    if expected >= 1.0:
        return 1.0
    return (observed - expected) / (1.0 - expected)


def stop_decisions(probs: np.ndarray, *, vocab: TagVocabulary) -> np.ndarray:
    """``probs (N, K)`` -> decisions ``(N, K)`` bool in vocabulary column order: a group's
    columns hold the one-hot of its likeliest tag, all False where "none" is likelier
    (``none_outcome``), an ungrouped column ``p >= 0.5``."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(vocab):
        raise InvalidInput(
            f"probs must be (N, {len(vocab)}); got {p.shape}", code="bad_stop_set_input"
        )
    out = p >= 0.5
    for columns in vocab.group_indices.values():
        top = likeliest_outcome(p[:, columns])
        out[:, columns] = False
        rows = np.flatnonzero(top < columns.size)
        out[rows, columns[top[rows]]] = True
    return out


def stop_set_kappa(prev_probs: np.ndarray, new_probs: np.ndarray, *, vocab: TagVocabulary) -> float:
    """Kappa between two versions' decisions on the same stop-set clips (same row order),
    all decisions flattened into one vector."""
    return cohens_kappa(
        stop_decisions(prev_probs, vocab=vocab), stop_decisions(new_probs, vocab=vocab)
    )


def first_stop(kappas: Sequence[float | None], *, threshold: float, window: int) -> int | None:
    """Index into ``kappas`` (oldest first) where ``window`` consecutive values first all
    reach ``threshold``; None when they never do. A None (no comparison possible) breaks a run."""
    if window < 1:
        raise InvalidInput("window must be >= 1", code="bad_option")
    run = 0
    for i, k in enumerate(kappas):
        run = run + 1 if k is not None and k >= threshold else 0
        if run >= window:
            return i
    return None


def should_stop(
    kappas: Sequence[float | None], *, threshold: float = 0.99, window: int = 3
) -> bool:
    """True when the last ``window`` kappas (oldest first) all reach ``threshold``: the
    predictions have stabilised. Defaults are the paper's (0.99, 3)."""
    if window < 1:
        raise InvalidInput("window must be >= 1", code="bad_option")
    tail = list(kappas)[-window:]
    return len(tail) == window and all(k is not None and k >= threshold for k in tail)


def pack_decisions(decisions: np.ndarray) -> str:
    """``(N, K)`` bool -> base64 of the row-major bits (8 decisions a byte), for JSON."""
    bits = np.packbits(np.asarray(decisions, dtype=bool).ravel())
    return base64.b64encode(bits.tobytes()).decode("ascii")


def unpack_decisions(packed: str, *, shape: tuple[int, int]) -> np.ndarray:
    """The inverse of ``pack_decisions``: ``(N, K)`` bool."""
    bits = np.frombuffer(base64.b64decode(packed), dtype=np.uint8)
    n = shape[0] * shape[1]
    if bits.size != -(-n // 8):  # unpackbits would pad a short input with zeros
        raise InvalidInput(f"{bits.size} packed bytes cannot hold {shape}", code="bad_stop_set")
    return np.unpackbits(bits, count=n).astype(bool).reshape(shape)
