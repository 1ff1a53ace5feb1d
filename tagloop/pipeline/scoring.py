"""Scoring the pool with the promoted model and refilling the labeling queue.

score_pool stores one prediction per (clip, promoted version): top tags (ranked among the
tags the version has a positive label of, ``trained_columns``), the uncertainty of the
configured strategy (over the units of those tags too), and the fused embedding (batched .npy
blobs, ``key#row``).
refill_queue turns those scores into a diverse, per-video-capped batch; before any model
exists it builds the seed batch by k-center on cheap descriptors instead, and clips the
ranking version has not scored yet (a first promotion's whole pool, new uploads) fill what
the scores leave of the batch the same way.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from tagloop.config import Settings
from tagloop.db import holdout as holdout_repo
from tagloop.db import jobs as job_repo
from tagloop.db import labels as label_repo
from tagloop.db import model_versions as version_repo
from tagloop.db import queue as queue_repo
from tagloop.db.engine import session_scope
from tagloop.db.loop_state import offerable
from tagloop.db.models import Clip, Label, Prediction, utcnow
from tagloop.errors import InvalidInput
from tagloop.storage import BlobStore
from tagloop.vocabulary import TagVocabulary

if TYPE_CHECKING:
    from tagloop.training.encoders import PretrainedEncoders
    from tagloop.training.predict import Predictions

log = logging.getLogger(__name__)

SEED_STRATEGY = "seed_kcenter"
TOP_TAGS = 5


def _unlabeled_clips() -> Select[int, int, str | None]:
    """(clip id, video id, tensor uri) of every processed clip nobody has labeled yet."""
    labeled = select(Label.id).where(Label.clip_id == Clip.id).exists()
    return select(Clip.id, Clip.video_id, Clip.tensor_uri).where(
        Clip.status == "ready", Clip.tensor_uri.is_not(None), ~labeled
    )


def _not_scored_by(version_id: int) -> ColumnElement[bool]:
    """Condition on ``Clip``: ``version_id`` has no prediction for the clip."""
    scored = (
        select(Prediction.id)
        .where(Prediction.clip_id == Clip.id, Prediction.model_version_id == version_id)
        .exists()
    )
    return ~scored


def _unscored_batch(
    session: Session, *, version_id: int, after: int, limit: int
) -> list[tuple[int, str]]:
    """The next ``limit`` (clip id, tensor uri) past ``after`` that ``version_id`` has not
    scored: keyset pages, so memory stays bounded however large the pool is."""
    q = _unlabeled_clips().where(_not_scored_by(version_id), Clip.id > after)
    q = q.order_by(Clip.id).limit(limit)
    return [(int(c), str(u)) for c, _, u in session.execute(q)]


def score_pool(*, settings: Settings, job_id: int | None = None, task_id: str | None = None) -> int:
    """Predict every unlabeled clip the promoted version has not scored yet; returns how many.

    Streams the pool in pages of ``score_batch_size`` and goes on until nothing is left, so
    clips that arrive while it runs are scored too. If another version is promoted meanwhile
    (a roll back), it carries on with that one."""
    import torch

    from tagloop.training.artifact import load_artifact

    torch.set_num_threads(settings.torch_threads)
    store = BlobStore(settings.blob_url)
    with session_scope(settings.database_url) as session:
        if job_id is not None:
            job_repo.start_job(session, job_repo.get_job(session, job_id), celery_task_id=task_id)
    done, version_id = 0, None
    while True:
        with session_scope(settings.database_url) as session:
            version = version_repo.promoted_version(session)
            if version is None or not version.artifact_uri:
                if version_id is None:
                    raise InvalidInput("no promoted model to score with yet", code="no_model")
                break
            if version.id != version_id:
                version_id, artifact_uri, after = version.id, version.artifact_uri, 0
                model = load_artifact(store.get_bytes(artifact_uri))
                counts = _counts_if_needed(settings, session, model.vocab)
                # Top tags are ranked, and uncertainty measured, among the tags the version
                # has a positive label of.
                columns = trained_columns(
                    model.vocab.tags,
                    version_repo.trained_tags(
                        session, version_id=version.id, created_at=version.created_at
                    ),
                )
            batch = _unscored_batch(
                session, version_id=version_id, after=after, limit=settings.score_batch_size
            )
        if not batch:
            break
        _score_batch(settings, store, model, version_id, batch, tag_counts=counts, columns=columns)
        after = batch[-1][0]
        done += len(batch)
        if job_id is not None:
            with session_scope(settings.database_url) as session:
                job_repo.report_progress(
                    session,
                    job_repo.get_job(session, job_id),
                    progress=0.0,
                    message=f"scored {done} clips with v{version_id}",
                )
    if job_id is not None:
        with session_scope(settings.database_url) as session:
            job_repo.finish_job(
                session,
                job_repo.get_job(session, job_id),
                status="succeeded",
                message=f"scored {done} clips with v{version_id}",
            )
    return done


def _score_batch(
    settings: Settings,
    store: BlobStore,
    model: Any,
    version_id: int,
    batch: list[tuple[int, str]],
    *,
    tag_counts: np.ndarray | None = None,
    columns: np.ndarray | None = None,
) -> None:
    """Predict one page of clips and store their predictions and embeddings; ``columns``:
    the tags top tags are ranked and uncertainty is measured among (``trained_columns``),
    None for all."""
    from tagloop.features.clip_tensor import load_clip_tensors
    from tagloop.pipeline.training import audio_frames_of
    from tagloop.selection import get_strategy
    from tagloop.training.predict import predict_clips

    spec = get_strategy(settings.selection_strategy)
    tensors = [load_clip_tensors(store.get_bytes(uri)) for _, uri in batch]
    if model.model.uses_visual_embedding:
        from tagloop.features.visual_embedding import ensure_visual_embeddings

        # Clips stored before embeddings existed: from their frames, with the set weights.
        ensure_visual_embeddings(tensors, weights=settings.visual_encoder_weights)
    preds = predict_clips(
        model.model,
        tensors,
        vocab=model.vocab,
        mc_passes=settings.mc_passes if "mc_probs" in spec.requires else 0,
        audio_frames=audio_frames_of(model),
    )
    ids = np.asarray([c for c, _ in batch], dtype=np.int64)
    uncertainty = uncertainty_of(
        preds,
        vocab=model.vocab,
        strategy=settings.selection_strategy,
        clip_ids=ids,
        tag_counts=tag_counts,
        columns=columns,
    )
    emb_key = f"embeddings/{version_id:06d}/{int(ids[0]):012d}.npy"
    buffer = io.BytesIO()
    np.save(buffer, preds.embedding.astype(np.float32))
    store.put_bytes(emb_key, buffer.getvalue())
    with session_scope(settings.database_url) as session:
        # A clip scored by a concurrent run since the page was read is left as it is.
        known = set(
            session.scalars(
                select(Prediction.clip_id).where(
                    Prediction.model_version_id == version_id,
                    Prediction.clip_id.in_(ids.tolist()),
                )
            )
        )
        for row, clip_id in enumerate(ids.tolist()):
            if clip_id in known:
                continue
            session.add(
                Prediction(
                    clip_id=clip_id,
                    model_version_id=version_id,
                    top_tags=top_tags(
                        preds.probs[row], model.vocab.tags, vocab=model.vocab, columns=columns
                    ),
                    uncertainty=float(uncertainty[row]),
                    embedding_uri=f"{emb_key}#{row}",
                )
            )


def label_counts(session: Session, vocab: TagVocabulary) -> np.ndarray:
    """``(K,)`` how many labeled clips carry each tag of ``vocab``, by each clip's latest
    label (the one training believes), counted as ``tagloop simulate`` counts its oracle's."""
    from tagloop.selection import count_tag_labels
    from tagloop.training.targets import build_targets

    latest = label_repo.latest_labels(session)
    targets = [build_targets(tags, vocab=vocab)[0] for tags in latest.values()]
    return count_tag_labels(np.stack(targets) if targets else np.zeros((0, len(vocab))))


def _counts_if_needed(
    settings: Settings, session: Session, vocab: TagVocabulary
) -> np.ndarray | None:
    """Per-tag label counts when the configured strategy weighs tags by them, else None
    (reading every label is not free). Counted once per scoring run: a page scored a few
    labels later would barely differ."""
    from tagloop.selection import get_strategy

    if "tag_counts" not in get_strategy(settings.selection_strategy).requires:
        return None
    return label_counts(session, vocab)


def uncertainty_of(
    preds: Predictions,
    *,
    vocab: TagVocabulary,
    strategy: str,
    clip_ids: np.ndarray,
    tag_counts: np.ndarray | None = None,
    columns: np.ndarray | None = None,
) -> np.ndarray:
    """``(N,)`` scores of a strategy for predicted clips: the one place the service and
    ``tagloop simulate`` turn model outputs into selection scores. tag_counts: ``(K,)`` from
    ``count_tag_labels`` over the labeled clips, for strategies that require them. columns:
    the version's trained columns (``trained_columns``): only their units are scored, so
    tags its head never learned, which score the same on every clip, neither tie nor dilute
    the ranking (issue 22); None: every column."""
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
        tag_counts=tag_counts,
        clip_ids=clip_ids,
        columns=columns,
    )


def trained_columns(tags: Sequence[str], trained: Collection[str] | None) -> np.ndarray | None:
    """Column indices ``(T,)`` of ``tags`` that are in ``trained`` (the tags with a positive
    label in a version's training data, ``db.model_versions.trained_tags``), ascending; None
    when ``trained`` is None (a version that did not record them: every tag counts)."""
    if trained is None:
        return None
    return np.asarray([j for j, t in enumerate(tags) if t in trained], dtype=np.int64)


def top_tags(
    probs: np.ndarray,
    tags: Sequence[str],
    *,
    k: int = TOP_TAGS,
    vocab: TagVocabulary | None = None,
    columns: np.ndarray | None = None,
) -> list[dict[str, object]]:
    """The k most probable tags, ``[{"tag", "p"}]`` best first, ties by column. With ``vocab``
    (whose tags are ``tags``) a grouped tag's item also has ``"p_none"``: its group's P(none)
    (``none_outcome``, over all the group's columns), which the top k alone cannot give once a
    group is cut off.

    columns: the only columns ranked (``trained_columns``), None for all. After a round on few
    labels every tag without a positive scores about 0.5; ranked with the others they would
    fill the top k and push out the tags the model knows (issue 22)."""
    from tagloop.none_outcome import none_probability

    candidates = np.arange(probs.shape[-1]) if columns is None else np.asarray(columns)
    values = probs[candidates]
    if 0 < k < values.size:
        # The k-th largest value, then every candidate at least as large (ties included) in
        # a stable sort: the same order as a stable sort of all, without sorting 10,000.
        kth = np.partition(values, values.size - k)[values.size - k]
        keep = np.flatnonzero(values >= kth)
        candidates, values = candidates[keep], values[keep]
    order = candidates[np.argsort(-values, kind="stable")[: max(k, 0)]]
    out: list[dict[str, object]] = []
    for j in order.tolist():
        item: dict[str, object] = {"tag": tags[j], "p": round(float(probs[j]), 4)}
        group = None if vocab is None else vocab.groups[j]
        if vocab is not None and group is not None:
            columns = vocab.group_indices[group]
            item["p_none"] = round(float(none_probability(probs[columns])), 4)
        out.append(item)
    return out


def _load_embeddings(store: BlobStore, uris: Sequence[str]) -> np.ndarray:
    """Rows of the batched embedding blobs, each blob read once."""
    cache: dict[str, np.ndarray] = {}
    rows: list[Any] = []
    for uri in uris:
        key, _, row = uri.partition("#")
        if key not in cache:
            cache[key] = np.load(io.BytesIO(store.get_bytes(key)))
        rows.append(cache[key][int(row)])
    return np.stack(rows)


def _scoring_version(session: Session) -> int | None:
    """The version whose scores rank the queue: the promoted one once it has scored anything,
    else the newest version that has (a promotion must not empty the queue while the new
    version is still scoring)."""
    promoted = version_repo.promoted_version(session)
    if promoted is None:
        return None
    if session.scalar(
        select(Prediction.id).where(Prediction.model_version_id == promoted.id).limit(1)
    ):
        return promoted.id
    latest = session.scalar(select(func.max(Prediction.model_version_id)))
    return int(latest) if latest is not None else promoted.id


def _top_candidates(
    session: Session,
    *,
    version_id: int,
    limit: int,
    now: datetime,
    cooldown_s: float,
    skipped: bool,
) -> list[tuple[int, int, float, str | None]]:
    """(clip, video, score, embedding uri) of the ``limit`` most uncertain offerable clips
    that somebody skipped before (``skipped``) or that nobody did.

    The database keeps the top ``limit`` (ORDER BY ... LIMIT on an index), so memory and time
    are bounded by the batch, not the pool."""
    where = offerable(now=now, cooldown_s=cooldown_s, queued_too=True, skipped=skipped)
    q = (
        select(Prediction.clip_id, Clip.video_id, Prediction.uncertainty, Prediction.embedding_uri)
        .join(Clip, Clip.id == Prediction.clip_id)
        .where(
            Prediction.model_version_id == version_id,
            Prediction.uncertainty.is_not(None),
            *where,
        )
        .order_by(Prediction.uncertainty.desc(), Prediction.clip_id.desc())
        .limit(limit)
    )
    return [(int(c), int(v), float(u or 0.0), e) for c, v, u, e in session.execute(q)]


def _assemble(
    settings: Settings, store: BlobStore, rows: list[tuple[int, int, float, str | None]], n: int
) -> list[tuple[int, str, float]]:
    """The diverse, per-video-capped batch of ``n`` among ``rows`` as queue items."""
    from tagloop.selection import assemble_batch, get_strategy

    if not rows or n <= 0:
        return []
    clip_ids = np.asarray([r[0] for r in rows], dtype=np.int64)
    scores = np.asarray([r[2] for r in rows], dtype=np.float64)
    uris = [r[3] for r in rows if r[3]]
    strategy = get_strategy(settings.selection_strategy)
    diverse = strategy.batch != "rank" and len(uris) == len(rows)  # rank reads no embeddings
    picked = assemble_batch(
        clip_ids=clip_ids,
        scores=scores,
        video_ids=np.asarray([r[1] for r in rows], dtype=np.int64),
        batch_size=n,
        per_video_cap=settings.per_video_cap,
        embeddings=_load_embeddings(store, uris) if diverse else None,
        top_m=len(rows),
        batch_rule=strategy.batch,
    )
    by_id = dict(zip(clip_ids.tolist(), scores.tolist(), strict=True))
    return [(int(c), settings.selection_strategy, by_id[int(c)]) for c in picked]


def _ranked_items(
    settings: Settings, session: Session, store: BlobStore, version_id: int
) -> list[tuple[int, str, float]]:
    """At most ``queue_size`` queue items among the clips ``version_id`` scored, best first:
    clips nobody skipped, then clips back from a skip's cool-down."""
    items: list[tuple[int, str, float]] = []
    for skipped in (False, True):
        left = settings.queue_size - len(items)
        if left <= 0:
            break
        rows = _top_candidates(
            session,
            version_id=version_id,
            limit=left * 5,
            now=utcnow(),
            cooldown_s=settings.skip_cooldown_seconds,
            skipped=skipped,
        )
        items += _assemble(settings, store, rows, left)
    return items


def refill_queue(*, settings: Settings, job_id: int | None = None) -> int:
    """Replace the queued items with the next batch to label; returns the number queued.

    Only offerable clips are queued (see ``pipeline.loop``); leased clips keep their lease.
    Clips nobody skipped come first; clips back from a skip's cool-down only fill what is
    left, so an annotator who skipped them still finds other clips in the queue."""
    store = BlobStore(settings.blob_url)
    with session_scope(settings.database_url) as session:
        if job_id is not None:
            job_repo.start_job(session, job_repo.get_job(session, job_id), celery_task_id=None)
        version_id = _scoring_version(session)
        items = [] if version_id is None else _ranked_items(settings, session, store, version_id)
        # Clips the ranking version has not scored yet (all of them between the first
        # promotion and the end of its scoring run, or new uploads) fill the rest by the seed
        # rule: ranking only scored clips would replace the seed batch with nothing while the
        # new version scores, and leave offerable clips out of an empty queue.
        left = settings.queue_size - len(items)
        if left > 0:
            items += _seed_items(settings, session, store, n=left, unscored_by=version_id)
        n = queue_repo.replace_queue(session, items=items)
        # The holdout's own lane takes back its clips whose skip cool-down is over.
        holdout_repo.fill_holdout_queue(session, cooldown_s=settings.skip_cooldown_seconds)
        if job_id is not None:
            job_repo.finish_job(
                session,
                job_repo.get_job(session, job_id),
                status="succeeded",
                message=f"queued {n}",
            )
        return n


def _pretrained_encoders(
    settings: Settings, session: Session, store: BlobStore
) -> PretrainedEncoders | None:
    """The newest pretraining run's branches when rounds would start from them, else None."""
    from tagloop.fusion.config import FusionConfig
    from tagloop.pipeline.pretrain import latest_pretrain
    from tagloop.training.encoders import PretrainedEncoders
    from tagloop.training.pretrain import load_encoder_state

    if not settings.use_pretrained or settings.visual_weights_path or settings.audio_weights_path:
        return None
    config = FusionConfig(
        frames_per_clip=settings.frames_per_clip,
        frame_size=settings.frame_size,
        n_mels=settings.n_mels,
    )
    run = latest_pretrain(session, fusion=config.to_dict())
    if run is None:
        return None
    saved = load_encoder_state(store.get_bytes(str(run.params["artifact_uri"])))
    return PretrainedEncoders(saved.state, config=config)


def _seed_items(
    settings: Settings,
    session: Session,
    store: BlobStore,
    *,
    n: int,
    unscored_by: int | None = None,
) -> list[tuple[int, str, float]]:
    """A diverse seed batch of at most ``n`` offerable clips as queue items
    (``settings.seed_batch_rule``: k-center or typical points, on the newest pretraining
    run's embeddings, else on cheap descriptors): the whole batch before the first model,
    else among the clips version ``unscored_by`` has not scored."""
    from tagloop.features.clip_tensor import load_clip_tensors
    from tagloop.features.descriptor import describe_clip
    from tagloop.selection import seed_batch

    if n <= 0:
        return []
    # Descriptors need the tensors: read a deterministic, spread-out sample of at most
    # seed_candidates clips (every step-th id), never the whole pool into memory.
    rows: list[Any] = []
    for skipped in (False, True):  # clips nobody skipped first, as in refill_queue
        where = offerable(
            now=utcnow(),
            cooldown_s=settings.skip_cooldown_seconds,
            queued_too=True,
            skipped=skipped,
        )
        if unscored_by is not None:
            where.append(_not_scored_by(unscored_by))
        n_clips = int(session.scalar(select(func.count(Clip.id)).where(*where)) or 0)
        step = max(1, math.ceil(n_clips / max(1, settings.seed_candidates)))
        q = select(Clip.id, Clip.video_id, Clip.tensor_uri).where(*where).order_by(Clip.id)
        q = q.limit(settings.seed_candidates - len(rows))
        found = session.execute(q.where(Clip.id % step == 0) if step > 1 else q).all()
        rows += found or session.execute(q).all()  # ids that all miss the stride: take the first
        if len(rows) >= n:
            break
    if not rows:
        return []
    tensors = [load_clip_tensors(store.get_bytes(str(r[2]))) for r in rows]
    encoders = _pretrained_encoders(settings, session, store)
    if encoders is not None:  # what the clips show and say, not their pixels
        descriptors = encoders.embed(tensors, audio_frames=settings.audio_frames)
    else:
        descriptors = np.stack([describe_clip(t) for t in tensors])
    del tensors
    picked = seed_batch(
        clip_ids=np.asarray([r[0] for r in rows], dtype=np.int64),
        descriptors=descriptors,
        video_ids=np.asarray([r[1] for r in rows], dtype=np.int64),
        batch_size=n,
        per_video_cap=settings.per_video_cap,
        seed=0,
        rule=settings.seed_batch_rule,
    )
    # Seed items carry their pick order as a descending score so the reason reads sensibly.
    k = len(picked)
    return [(int(c), SEED_STRATEGY, float(k - i) / k) for i, c in enumerate(picked)]
