"""The stop set and each version's agreement with the one before on it (the stopping rule,
``tagloop.training.stopping``).

The stop set needs no table: it is the ``stop_set_size`` ready pool clips (never holdout ones)
with the smallest ``hash_uniform(clip_id, seed=STOP_SET_SEED)``. A clip's hash never changes,
so the set only moves when the pool grows: a clip once in it stays in it unless clips with a
smaller hash arrive, and each new clip pushes out at most one (while the pool is smaller than
the set, the set is the whole pool). Labeled clips stay in it on purpose: dropping them would
move the set every round. Consecutive versions are compared on the clips both predicted.

Each version stores its decisions in ``metrics.stop_set`` (clip ids, the decisions bit-packed
in base64, the shape) and its kappa against the previous version that has a stop set in
``metrics.stop_kappa`` (None for the first one, or when the vocabulary was reordered). The
rule is advice: when the stop set cannot be predicted (a clip's tensors gone missing, say) the
version keeps its model and records ``metrics.stop_set_error`` instead, and the next version
is compared with the last one that measured the set.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from tagloop.config import Settings
from tagloop.db.engine import session_scope
from tagloop.db.models import Clip, ModelVersion
from tagloop.selection.strategy import hash_uniform
from tagloop.storage import BlobStore
from tagloop.training.stopping import (
    cohens_kappa,
    pack_decisions,
    stop_decisions,
    unpack_decisions,
)
from tagloop.vocabulary import TagVocabulary

if TYPE_CHECKING:
    from tagloop.fusion import FusionModel

log = logging.getLogger(__name__)

STOP_SET_SEED = 2009  # fixed forever: another seed is another stop set
_PAGE = 100_000  # clip ids read per query: memory stays bounded on a pool of millions


def stop_set_clip_ids(session: Session, *, size: int, seed: int = STOP_SET_SEED) -> list[int]:
    """The stop set: ids of the ``size`` ready, non-holdout clips with tensors that have the
    smallest hash, ascending by id. Reads the pool in pages of ids, keeping the best ``size``."""
    if size <= 0:
        return []
    best_ids = np.zeros(0, dtype=np.int64)
    best_hash = np.zeros(0, dtype=np.float64)
    after = 0
    while True:
        page = np.asarray(
            session.scalars(
                select(Clip.id)
                .where(
                    Clip.id > after,
                    Clip.status == "ready",
                    Clip.split != "holdout",
                    Clip.tensor_uri.is_not(None),
                )
                .order_by(Clip.id)
                .limit(_PAGE)
            ).all(),
            dtype=np.int64,
        )
        if page.size == 0:
            break
        after = int(page[-1])
        ids = np.concatenate([best_ids, page])
        hashes = np.concatenate([best_hash, hash_uniform(page, seed=seed)])
        keep = np.lexsort((ids, hashes))[:size]  # ties (never seen in practice) by id
        best_ids, best_hash = ids[keep], hashes[keep]
    return sorted(int(c) for c in best_ids)


def _previous(session: Session, version_id: int) -> ModelVersion | None:
    """The newest version created before ``version_id`` that measured a stop set."""
    for v in session.scalars(
        select(ModelVersion).where(ModelVersion.id < version_id).order_by(ModelVersion.id.desc())
    ):
        if isinstance((v.metrics or {}).get("stop_set"), dict):
            return v
    return None


def kappa_against(
    previous: dict[str, Any],
    previous_vocab: TagVocabulary,
    *,
    clip_ids: list[int],
    probs: np.ndarray,
    vocab: TagVocabulary,
) -> float | None:
    """Kappa between a stored stop set (``metrics.stop_set`` of the previous version) and new
    ``probs (N, K)`` on ``clip_ids``, over the clips both hold and the previous version's
    tags. None when they share no clip or the new vocabulary does not extend the old one."""
    k = len(previous_vocab)
    if vocab.tags[:k] != previous_vocab.tags or vocab.groups[:k] != previous_vocab.groups:
        return None
    old_ids = [int(c) for c in previous["clip_ids"]]
    old = unpack_decisions(previous["decisions"], shape=(len(old_ids), k))
    # New tags appended to a group change its argmax: decide over the old tags only.
    new = stop_decisions(probs[:, :k], vocab=previous_vocab)
    old_row = {c: i for i, c in enumerate(old_ids)}
    common = [(old_row[c], i) for i, c in enumerate(clip_ids) if c in old_row]
    if not common:
        return None
    old_rows, new_rows = (list(r) for r in zip(*common, strict=True))
    return cohens_kappa(old[old_rows], new[new_rows])


def measure_stop_set(
    *,
    settings: Settings,
    store: BlobStore,
    version_id: int,
    model: FusionModel,
    vocab: TagVocabulary,
    audio_frames: int | None,
) -> dict[str, Any]:
    """Predict the stop set with a just-trained version; returns the ``stop_set`` and
    ``stop_kappa`` entries for its metrics (empty when the stop set is empty)."""
    from tagloop.features.clip_tensor import load_clip_tensors
    from tagloop.training.predict import predict_clips

    with session_scope(settings.database_url) as session:
        clip_ids = stop_set_clip_ids(session, size=settings.stop_set_size)
        uris = dict(
            session.execute(select(Clip.id, Clip.tensor_uri).where(Clip.id.in_(clip_ids))).all()
        )
        prev = _previous(session, version_id)
        previous = None
        if prev is not None:
            previous = (prev.id, dict(prev.metrics["stop_set"]), list(prev.vocabulary))
    if not clip_ids:
        return {}
    tensors = (load_clip_tensors(store.get_bytes(str(uris[c]))) for c in clip_ids)
    probs = predict_clips(model, tensors, vocab=vocab, audio_frames=audio_frames).probs
    kappa = None
    if previous is not None:
        prev_id, stored, prev_vocab = previous
        kappa = kappa_against(
            stored,
            TagVocabulary.from_json(prev_vocab),
            clip_ids=clip_ids,
            probs=probs,
            vocab=vocab,
        )
        log.info(
            "stop set: v%d vs v%d kappa %s on %d clips", version_id, prev_id, kappa, len(clip_ids)
        )
    return {
        "stop_set": {
            "clip_ids": clip_ids,
            "n_tags": len(vocab),
            "decisions": pack_decisions(stop_decisions(probs, vocab=vocab)),
            "compared_with": previous[0] if previous is not None else None,
        },
        "stop_kappa": kappa,
    }


def measure_stop_set_or_error(
    *,
    settings: Settings,
    store: BlobStore,
    version_id: int,
    model: FusionModel,
    vocab: TagVocabulary,
    audio_frames: int | None,
) -> dict[str, Any]:
    """:func:`measure_stop_set`, or ``{"stop_set_error": {"code", "message"}}`` when it fails:
    a trained version is worth more than its stopping-rule figure, so the round goes on."""
    try:
        return measure_stop_set(
            settings=settings,
            store=store,
            version_id=version_id,
            model=model,
            vocab=vocab,
            audio_frames=audio_frames,
        )
    except Exception as exc:  # advisory figure: any failure is reported, never fatal
        code = str(getattr(exc, "code", type(exc).__name__))
        log.warning("stop set of v%d not measured (%s): %s", version_id, code, exc)
        return {"stop_set_error": {"code": code, "message": str(exc)[:500]}}
