"""Scoring the pool with the promoted model and refilling the labeling queue.

score_pool stores one prediction per (clip, promoted version): top tags, the uncertainty of
the configured strategy, and the fused embedding (batched .npy blobs, ``key#row``).
refill_queue turns those scores into a diverse, per-video-capped batch; before any model
exists it builds the seed batch by k-center on cheap descriptors instead.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from tagloop.config import Settings
from tagloop.db import jobs as job_repo
from tagloop.db import model_versions as version_repo
from tagloop.db import queue as queue_repo
from tagloop.db.engine import session_scope
from tagloop.db.models import Clip, Label, Prediction
from tagloop.errors import InvalidInput
from tagloop.storage import BlobStore
from tagloop.vocabulary import TagVocabulary

if TYPE_CHECKING:
    from tagloop.training.predict import Predictions

log = logging.getLogger(__name__)

SCORE_JOB = "score"
SEED_STRATEGY = "seed_kcenter"
TOP_TAGS = 5


def _unlabeled_clips() -> Select[int, int, str | None]:
    """(clip id, video id, tensor uri) of every processed clip nobody has labeled yet."""
    labeled = select(Label.id).where(Label.clip_id == Clip.id).exists()
    return select(Clip.id, Clip.video_id, Clip.tensor_uri).where(
        Clip.status == "ready", Clip.tensor_uri.is_not(None), ~labeled
    )


def score_pool(*, settings: Settings, job_id: int | None = None, task_id: str | None = None) -> int:
    """Predict every unlabeled clip the promoted version has not scored yet; returns how many."""
    import torch

    from tagloop.features.clip_tensor import load_clip_tensors
    from tagloop.pipeline.training import audio_frames_of
    from tagloop.selection import get_strategy
    from tagloop.training.artifact import load_artifact
    from tagloop.training.predict import predict_clips

    torch.set_num_threads(settings.torch_threads)
    store = BlobStore(settings.blob_url)
    with session_scope(settings.database_url) as session:
        if job_id is not None:
            job_repo.start_job(session, job_repo.get_job(session, job_id), celery_task_id=task_id)
        version = version_repo.promoted_version(session)
        if version is None or not version.artifact_uri:
            raise InvalidInput("no promoted model to score with yet", code="no_model")
        version_id, artifact_uri = version.id, version.artifact_uri
        scored = (
            select(Prediction.id)
            .where(Prediction.clip_id == Clip.id, Prediction.model_version_id == version_id)
            .exists()
        )
        todo = [
            (int(c), str(u))
            for c, _, u in session.execute(_unlabeled_clips().where(~scored).order_by(Clip.id))
        ]
    model = load_artifact(store.get_bytes(artifact_uri))
    spec = get_strategy(settings.selection_strategy)
    mc_passes = settings.mc_passes if "mc_probs" in spec.requires else 0
    done = 0
    for start in range(0, len(todo), settings.score_batch_size):
        batch = todo[start : start + settings.score_batch_size]
        tensors = [load_clip_tensors(store.get_bytes(uri)) for _, uri in batch]
        preds = predict_clips(
            model.model,
            tensors,
            vocab=model.vocab,
            mc_passes=mc_passes,
            audio_frames=audio_frames_of(model),
        )
        ids = np.asarray([c for c, _ in batch], dtype=np.int64)
        uncertainty = uncertainty_of(
            preds, vocab=model.vocab, strategy=settings.selection_strategy, clip_ids=ids
        )
        emb_key = f"embeddings/{version_id:06d}/{int(ids[0]):012d}.npy"
        buffer = io.BytesIO()
        np.save(buffer, preds.embedding.astype(np.float32))
        store.put_bytes(emb_key, buffer.getvalue())
        with session_scope(settings.database_url) as session:
            for row, clip_id in enumerate(ids.tolist()):
                session.add(
                    Prediction(
                        clip_id=clip_id,
                        model_version_id=version_id,
                        top_tags=top_tags(preds.probs[row], model.vocab.tags),
                        uncertainty=float(uncertainty[row]),
                        embedding_uri=f"{emb_key}#{row}",
                    )
                )
            if job_id is not None:
                job_repo.report_progress(
                    session,
                    job_repo.get_job(session, job_id),
                    progress=(start + len(batch)) / len(todo),
                    message=f"scored {start + len(batch)}/{len(todo)} clips",
                )
        done += len(batch)
    if job_id is not None:
        with session_scope(settings.database_url) as session:
            job_repo.finish_job(
                session,
                job_repo.get_job(session, job_id),
                status="succeeded",
                message=f"scored {done} clips with v{version_id}",
            )
    return done


def uncertainty_of(
    preds: Predictions, *, vocab: TagVocabulary, strategy: str, clip_ids: np.ndarray
) -> np.ndarray:
    """``(N,)`` scores of a strategy for predicted clips: the one place the service and
    ``tagloop simulate`` turn model outputs into selection scores."""
    from tagloop.selection import score_pool as score_strategy

    modality = (
        np.stack([preds.modality_probs[m] for m in sorted(preds.modality_probs)])
        if len(preds.modality_probs) >= 2
        else None
    )
    return score_strategy(
        preds.probs,
        vocab=vocab,
        strategy=strategy,
        mc_probs=preds.mc_probs,
        modality_probs=modality,
        clip_ids=clip_ids,
    )


def top_tags(
    probs: np.ndarray, tags: Sequence[str], *, k: int = TOP_TAGS
) -> list[dict[str, object]]:
    """The k most probable tags, ``[{"tag", "p"}]`` best first."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"tag": tags[j], "p": round(float(probs[j]), 4)} for j in order]


def _load_embeddings(store: BlobStore, uris: Sequence[str]) -> np.ndarray:
    """Rows of the batched embedding blobs, each blob read once."""
    cache: dict[str, np.ndarray] = {}
    rows = []
    for uri in uris:
        key, _, row = uri.partition("#")
        if key not in cache:
            cache[key] = np.load(io.BytesIO(store.get_bytes(key)))
        rows.append(cache[key][int(row)])
    return np.stack(rows)


def refill_queue(*, settings: Settings) -> int:
    """Replace the queued items with the next batch to label; returns the number queued."""
    from tagloop.selection import assemble_batch

    store = BlobStore(settings.blob_url)
    with session_scope(settings.database_url) as session:
        version = version_repo.promoted_version(session)
        if version is None:
            return _refill_seed(settings, session, store)
        rows = session.execute(
            select(
                Prediction.clip_id, Clip.video_id, Prediction.uncertainty, Prediction.embedding_uri
            )
            .join(Clip, Clip.id == Prediction.clip_id)
            .where(
                Prediction.model_version_id == version.id,
                ~select(Label.id).where(Label.clip_id == Clip.id).exists(),
            )
        ).all()
        if not rows:
            return queue_repo.replace_queue(session, items=[])
        clip_ids = np.asarray([r[0] for r in rows], dtype=np.int64)
        video_ids = np.asarray([r[1] for r in rows], dtype=np.int64)
        scores = np.asarray([r[2] for r in rows], dtype=np.float64)
        top_m = min(len(rows), settings.queue_size * 5)
        best = np.argsort(-scores, kind="stable")[:top_m]
        emb = _load_embeddings(store, [rows[i][3] for i in best])
        picked = assemble_batch(
            clip_ids=clip_ids[best],
            scores=scores[best],
            video_ids=video_ids[best],
            batch_size=settings.queue_size,
            per_video_cap=settings.per_video_cap,
            embeddings=emb,
            top_m=top_m,
        )
        by_id = dict(zip(clip_ids.tolist(), scores.tolist(), strict=True))
        items = [(int(c), settings.selection_strategy, by_id[int(c)]) for c in picked]
        return queue_repo.replace_queue(session, items=items)


def _refill_seed(settings: Settings, session: Session, store: BlobStore) -> int:
    """Before the first model: a diverse seed batch (k-center on cheap descriptors)."""
    from tagloop.features.clip_tensor import load_clip_tensors
    from tagloop.features.descriptor import describe_clip
    from tagloop.selection import seed_batch

    rows = session.execute(_unlabeled_clips().order_by(Clip.id)).all()
    if not rows:
        return queue_repo.replace_queue(session, items=[])
    # Descriptors need the tensors: read a deterministic, spread-out sample, not all of them.
    limit = settings.seed_candidates
    if len(rows) > limit:
        step = len(rows) / limit
        rows = [rows[int(i * step)] for i in range(limit)]
    descriptors = np.stack(
        [describe_clip(load_clip_tensors(store.get_bytes(str(r[2])))) for r in rows]
    )
    picked = seed_batch(
        clip_ids=np.asarray([r[0] for r in rows], dtype=np.int64),
        descriptors=descriptors,
        video_ids=np.asarray([r[1] for r in rows], dtype=np.int64),
        batch_size=settings.queue_size,
        per_video_cap=settings.per_video_cap,
        seed=0,
    )
    # Seed items carry their pick order as a descending score so the reason reads sensibly.
    n = len(picked)
    items = [(int(c), SEED_STRATEGY, float(n - i) / n) for i, c in enumerate(picked)]
    return queue_repo.replace_queue(session, items=items)
