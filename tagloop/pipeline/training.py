"""Training rounds and the model registry: train_round, guarded promotion, holdout metrics.

A round trains on every label so far (the latest label of each clip), warm-started from the
promoted version, and is promoted only when it is not worse than the promoted version on the
same validation clips (by more than ``promote_tolerance``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tagloop.config import Settings
from tagloop.db import jobs as job_repo
from tagloop.db import labels as label_repo
from tagloop.db import model_versions as version_repo
from tagloop.db import tags as tag_repo
from tagloop.db.engine import session_scope
from tagloop.db.models import Clip
from tagloop.db.pseudo_labels import add_pseudo_labels
from tagloop.errors import InvalidInput
from tagloop.pipeline.stopping import measure_stop_set_or_error
from tagloop.storage import BlobStore
from tagloop.training.metrics import positives_per_tag
from tagloop.vocabulary import TagVocabulary

if TYPE_CHECKING:
    from collections.abc import Callable

    from tagloop.fusion.config import FusionConfig
    from tagloop.pipeline.cotraining import CotrainStep
    from tagloop.training.backbone import Backbone
    from tagloop.training.dataset import LabeledClip
    from tagloop.training.loop import TrainOptions, TrainResult
    from tagloop.training.promotion import Comparison

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundOutcome:
    version_id: int
    promoted: bool
    score: float
    baseline_score: float | None


def model_key(version_id: int) -> str:
    return f"models/{version_id:06d}/model.pt"


def split_labeled(
    samples: list[LabeledClip], *, val_fraction: float
) -> tuple[list[LabeledClip], list[LabeledClip]]:
    """(train, val) by each clip's stable hash split; with too few labels for both, both are
    every clip (the round says so in its metrics, ``val_is_train``)."""
    from tagloop.training.split import assign_split

    split = {s.clip_id: assign_split(s.clip_id, val_fraction=val_fraction) for s in samples}
    train = [s for s in samples if split[s.clip_id] == "train"]
    val = [s for s in samples if split[s.clip_id] == "val"]
    if not val or not train:
        return samples, samples
    return train, val


def round_config(settings: Settings) -> FusionConfig:
    """The model shape a round trains under ``settings``."""
    from tagloop.fusion.config import FusionConfig

    return FusionConfig(
        frames_per_clip=settings.frames_per_clip,
        frame_size=settings.frame_size,
        n_mels=settings.n_mels,
        visual_arch=settings.visual_arch,
        probe_visual="pixels" if settings.visual_encoder == "none" else "embedding",
    )


def describe_encoders(kind: str, config: FusionConfig, settings: Settings) -> dict[str, str]:
    """Which encoders made a version's features, for its config and /models: a probe on the
    pretrained embedding names the network and its weights (a user's own file by name), a
    probe on pixels says so, a trained model names its branch architectures."""
    from tagloop.fusion.efficientnet_lite import ENCODER_NAME

    if kind != "probe":
        return {"visual": f"{config.visual_arch} (trained)", "audio": "logmel_cnn (trained)"}
    visual = "pixels"
    if config.probe_visual == "embedding":
        own = settings.visual_encoder_weights
        visual = ENCODER_NAME if own is None else f"efficientnet_lite0@{own.name}"
    audio = "logmel_stats" if config.probe_audio == "stats" else "logmel_bins+stats"
    return {"visual": visual, "audio": audio}


def round_options(settings: Settings) -> TrainOptions:
    """The training options a round uses under ``settings``."""
    from tagloop.training.loop import TrainOptions

    return TrainOptions(
        audio_frames=settings.audio_frames,
        epochs=settings.train_epochs,
        patience=settings.train_patience,
        num_threads=settings.torch_threads,
        cv_folds=settings.probe_cv_folds,
    )


def round_kind(settings: Settings, n_labels: int, *, pretrained: bool) -> tuple[str, int]:
    """(the kind a round on ``n_labels`` labels trains, the label count where it switches from
    the probe to ``model_kind``): the switch comes later with ``pretrained`` branches."""
    from tagloop.training.capacity import model_kind_for, probe_below_for

    probe_below = probe_below_for(
        pretrained=pretrained,
        probe_below=settings.probe_below_labels,
        probe_below_pretrained=settings.probe_below_labels_pretrained,
    )
    kind = model_kind_for(n_labels, full_kind=settings.model_kind, probe_below=probe_below)
    return kind, probe_below


def _progress(settings: Settings, job_id: int, fraction: float, message: str) -> None:
    with session_scope(settings.database_url) as session:
        job_repo.report_progress(
            session, job_repo.get_job(session, job_id), progress=fraction, message=message
        )


def train_round(*, settings: Settings, job_id: int, task_id: str | None = None) -> RoundOutcome:
    """Train a new model version on all labels; register it; promote it when not worse."""
    import torch

    from tagloop.features.clip_tensor import load_clip_tensors
    from tagloop.training.artifact import load_artifact, save_artifact
    from tagloop.training.dataset import LabeledClip
    from tagloop.training.loop import train_model
    from tagloop.training.targets import build_targets

    torch.set_num_threads(settings.torch_threads)
    store = BlobStore(settings.blob_url)
    with session_scope(settings.database_url) as session:
        job_repo.start_job(session, job_repo.get_job(session, job_id), celery_task_id=task_id)
        vocab = tag_repo.load_vocabulary(session)
        every = label_repo.latest_labels(session)
        clip_rows = session.query(Clip.id, Clip.tensor_uri, Clip.split, Clip.video_id).filter(
            Clip.id.in_(list(every))
        )
        uris = {int(c): u for c, u, _, _ in clip_rows}
        videos = {int(c): int(v) for c, _, _, v in clip_rows}
        # Holdout labels measure every version and never train one.
        holdout_ids = {int(c) for c, _, split, _ in clip_rows if split == "holdout"}
        labels = {c: t for c, t in every.items() if c not in holdout_ids}
        holdout_labels = {c: t for c, t in every.items() if c in holdout_ids}
        promoted = version_repo.promoted_version(session)
        baseline = (promoted.id, promoted.artifact_uri) if promoted else None
        promoted_backbone = (promoted.config or {}).get("backbone") if promoted else None
    if not labels or len(vocab) == 0:
        raise InvalidInput("there are no labels to train on yet", code="no_labels")

    def load(chosen: dict[int, list[str]], what: str) -> list[LabeledClip]:
        out: list[LabeledClip] = []
        for i, (clip_id, tags) in enumerate(sorted(chosen.items())):
            uri = uris.get(clip_id)
            if not uri:
                continue  # the clip was deleted since it was labeled
            targets, known = build_targets(tags, vocab=vocab)
            tensors = load_clip_tensors(store.get_bytes(uri))
            out.append(
                LabeledClip(
                    clip_id=clip_id,
                    tensors=tensors,
                    targets=targets,
                    known=known,
                    group=videos[clip_id],
                )
            )
            if i % 200 == 0:
                fraction = 0.05 * i / len(chosen)
                _progress(settings, job_id, fraction, f"loading {what} {i}/{len(chosen)}")
        return out

    samples = load(labels, "clips")
    holdout = load(holdout_labels, "holdout clips")
    train, val = split_labeled(samples, val_fraction=settings.val_fraction)
    config = round_config(settings)
    options = round_options(settings)
    backbone = _backbone(settings, store, fusion=config.to_dict())
    kind, probe_below = round_kind(settings, len(samples), pretrained=bool(backbone))
    init_state, init_vocab, old = None, None, None
    if baseline is not None and baseline[1]:
        old = load_artifact(store.get_bytes(baseline[1]))
        # Other branch weights than the promoted version started from: a new starting point.
        same_start = promoted_backbone == (backbone.describe() if backbone else None)
        if old.kind == kind and old.config == config and same_start:
            init_state, init_vocab = old.model.state_dict(), old.vocab
    old_reads = old is not None and old.model.uses_visual_embedding
    if (kind == "probe" and config.probe_visual == "embedding") or old_reads:
        # Clips stored before embeddings existed get theirs from their frames, with the
        # configured weights (deeper code would fall back to the package's).
        from tagloop.features.visual_embedding import ensure_visual_embeddings

        ensure_visual_embeddings(
            [s.tensors for s in samples + holdout], weights=settings.visual_encoder_weights
        )

    with session_scope(settings.database_url) as session:
        version = version_repo.create_version(
            session,
            vocabulary=vocab.to_json(),
            config={
                "kind": kind,
                "capacity": {"labels": len(samples), "probe_below": probe_below},
                "fusion": config.to_dict(),
                "train": options.to_dict(),
                "warm_start_from": baseline[0] if baseline and init_state else None,
                "backbone": backbone.describe() if backbone else None,
                "encoders": describe_encoders(kind, config, settings),
            },
            n_train=len(train),
        )
        version_id = version.id

    def on_epoch(epoch: int, total: int, info: dict[str, Any]) -> None:
        score = info.get("score")
        _progress(
            settings,
            job_id,
            0.05 + 0.9 * epoch / max(total, 1),
            f"epoch {epoch}/{total}" + (f", val score {score:.3f}" if score is not None else ""),
        )

    try:
        result = train_model(
            kind=kind,
            vocab=vocab,
            config=config,
            train=train,
            val=val,
            options=options,
            init_state=init_state,
            init_vocab=init_vocab,
            progress=on_epoch,
            backbone=backbone,
        )
        cotrain = None
        if settings.cotrain:
            result, cotrain = _cotrain_round(
                result,
                settings=settings,
                store=store,
                job_id=job_id,
                exclude=set(every),
                retrain=lambda clips: train_model(
                    kind=kind,
                    vocab=vocab,
                    config=config,
                    train=train + clips,  # validation stays human-labeled only
                    val=val,
                    options=options,
                    init_state=init_state,
                    init_vocab=init_vocab,
                    progress=on_epoch,
                    backbone=backbone,
                ),
                vocab=vocab,
                audio_frames=options.audio_frames,
            )
        # The holdout, when it has enough labels, is a fairer judge than a small validation
        # split: neither version trained on it.
        enough = len(holdout) >= settings.promote_min_holdout
        comparison = _compare(
            # On validation clips, the fit that never saw them (a refit probe's served
            # weights did); on the holdout, what is served.
            result.model if enough else result.validation_model,
            old,
            holdout if enough else val,
            on="holdout" if enough else "validation",
            vocab=vocab,
            audio_frames=options.audio_frames,
        )
        baseline_score = comparison.old_score
        metrics = dict(result.metrics)
        metrics["promotion"] = comparison.to_dict()
        if holdout:
            metrics["holdout"] = evaluate_on(
                result.model, holdout, vocab=vocab, audio_frames=options.audio_frames
            )
        metrics.update(
            n_val=len(val),
            val_is_train=val is train,
            epochs_run=result.epochs_run,
            seconds=round(result.seconds, 2),
            baseline_score=baseline_score,
            fusion_weights=result.model.fusion_weights(),
        )
        # A probe round serves the candidate the folds chose, whose features may differ.
        config = result.model.config
        artifact = save_artifact(
            model=result.model,
            kind=kind,
            vocab=vocab,
            config=config,
            options=options,
            metrics=metrics,
            judged=result.judged,
        )
        store.put_bytes(model_key(version_id), artifact)
        # Positives per tag this round learned from; its stop-set agreement (stopping rule).
        metrics["train_positives"] = positives_per_tag(
            np.stack([s.targets for s in train]), np.stack([s.known for s in train]), vocab=vocab
        )
        metrics.update(
            measure_stop_set_or_error(
                settings=settings,
                store=store,
                version_id=version_id,
                model=result.model,
                vocab=vocab,
                audio_frames=options.audio_frames,
            )
        )
    except BaseException:
        with session_scope(settings.database_url) as session:
            version_repo.get_version(session, version_id).status = "failed"
        raise

    score = float(result.metrics["score"])
    if comparison.new_score is not None and baseline_score is not None:
        score = comparison.new_score  # the same clips and tags the promoted version was scored on
    promote = should_promote(score, baseline_score, tolerance=settings.promote_tolerance)
    with session_scope(settings.database_url) as session:
        version = version_repo.get_version(session, version_id)
        version.metrics, version.artifact_uri, version.status = (
            metrics,
            model_key(version_id),
            "ready",
        )
        version.config = {
            **version.config,
            "fusion": config.to_dict(),
            "encoders": describe_encoders(kind, config, settings),
        }
        if cotrain is not None:
            version.config = {**version.config, "cotrain": cotrain.describe(settings)}
            add_pseudo_labels(session, version_id, cotrain.labels)
        if promote:
            version_repo.promote(session, version_id)
        verdict = "promoted" if promote else f"kept v{baseline[0] if baseline else '-'}"
        job_repo.finish_job(
            session,
            job_repo.get_job(session, job_id),
            status="succeeded",
            message=f"v{version_id}: score {score:.3f} ({verdict}), {comparison.describe()}",
        )
    return RoundOutcome(version_id, promote, score, baseline_score)


def _cotrain_round(
    result: TrainResult,
    *,
    settings: Settings,
    store: BlobStore,
    job_id: int,
    exclude: set[int],
    retrain: Callable[[list[LabeledClip]], TrainResult],
    vocab: TagVocabulary,
    audio_frames: int | None,
) -> tuple[TrainResult, CotrainStep]:
    """Pseudo-label with the model just trained, then train again with those labels added
    (the first model is kept when no clip qualified)."""
    from tagloop.pipeline.cotraining import pseudo_label_step

    step = pseudo_label_step(
        result.model,
        settings=settings,
        store=store,
        vocab=vocab,
        exclude=exclude,
        audio_frames=audio_frames,
        progress=lambda message: _progress(settings, job_id, 0.5, message),
    )
    if not step.clips:
        return result, step
    _progress(settings, job_id, 0.5, f"co-training: training again with {len(step.clips)} pseudo")
    return retrain(step.clips), step


def _backbone(settings: Settings, store: BlobStore, *, fusion: dict[str, Any]) -> Backbone:
    """Where the branches start: weight files the settings name, else the newest pretraining
    run on the pool (``use_pretrained``), else nothing (scratch)."""
    from tagloop.pipeline.pretrain import latest_pretrain, pretrained_backbone
    from tagloop.training.backbone import Backbone

    if settings.visual_weights_path or settings.audio_weights_path or not settings.use_pretrained:
        return Backbone(
            visual=settings.visual_weights_path,
            audio=settings.audio_weights_path,
            freeze=settings.freeze_backbone,
        )
    with session_scope(settings.database_url) as session:
        run = latest_pretrain(session, fusion=fusion)
        if run is None:
            return Backbone()
        session.expunge(run)
    return pretrained_backbone(
        settings=settings, store=store, run=run, freeze=settings.freeze_backbone
    )


def should_promote(score: float, baseline: float | None, *, tolerance: float) -> bool:
    """Promote unless the promoted version does better on the same clips by > tolerance."""
    return baseline is None or score >= baseline - tolerance


def audio_frames_of(model: Any) -> int | None:
    """The log-mel window a stored model was trained with (scoring must use the same)."""
    value = model.metadata.get("options", {}).get("audio_frames")
    return int(value) if value is not None else None


def _compare(
    new_model: Any,
    old: Any,
    clips: list[Any],
    *,
    on: str,
    vocab: TagVocabulary,
    audio_frames: int | None,
) -> Comparison:
    """The new and the promoted version on the same ``clips``, over the promoted version's
    tags (a reordered vocabulary cannot be compared: old side None). On validation clips the
    promoted version speaks through its validation fit, which never trained on them."""
    from tagloop.training.predict import predict_clips
    from tagloop.training.promotion import compare_versions

    comparable = old is not None and list(old.vocab.tags) == list(vocab.tags[: len(old.vocab)])
    cmp_vocab = old.vocab if comparable else vocab
    k = len(cmp_vocab)
    if not clips:
        return compare_versions(
            np.zeros((0, k)), None, np.zeros((0, k)), np.zeros((0, k), bool), vocab=cmp_vocab, on=on
        )
    tensors = [s.tensors for s in clips]
    new_probs = predict_clips(new_model, tensors, vocab=vocab, audio_frames=audio_frames).probs
    old_probs = None
    if comparable:
        old_model = old.validation_model if on == "validation" else old.model
        old_probs = predict_clips(
            old_model, tensors, vocab=old.vocab, audio_frames=audio_frames_of(old)
        ).probs
    return compare_versions(
        new_probs[:, :k],
        old_probs,
        np.stack([s.targets[:k] for s in clips]),
        np.stack([s.known[:k] for s in clips]),
        vocab=cmp_vocab,
        on=on,
    )


def evaluate_on(
    model: Any, clips: list[Any], *, vocab: TagVocabulary, audio_frames: int | None
) -> dict[str, Any]:
    """Metrics of ``model`` on labeled clips it never trained on (the holdout), with
    ``score`` the same single number promotion uses. From ``MIN_CLIPS`` clips on, also the
    ``decision_threshold`` fitted on them (None with too few positives) and
    ``micro_f1_fitted``, micro-F1 at a threshold fitted on the other half of them (two folds
    by clip id), to set against ``micro_f1`` at 0.5, and ``group_threshold``, the cut on a
    group's top probability (``training.thresholds``)."""
    from tagloop.training.loop import selection_score
    from tagloop.training.metrics import evaluate_predictions
    from tagloop.training.predict import predict_clips
    from tagloop.training.thresholds import (
        MIN_CLIPS,
        cross_fitted_micro_f1,
        fit_decision_threshold,
        fit_group_threshold,
    )

    preds = predict_clips(model, [s.tensors for s in clips], vocab=vocab, audio_frames=audio_frames)
    targets = np.stack([s.targets for s in clips])
    known = np.stack([s.known for s in clips])
    metrics = evaluate_predictions(preds.probs, targets, known, vocab=vocab)
    metrics["score"] = selection_score(metrics)
    metrics["decision_threshold"] = metrics["micro_f1_fitted"] = metrics["group_threshold"] = None
    if len(clips) >= MIN_CLIPS:
        metrics["group_threshold"] = fit_group_threshold(
            preds.probs, targets, known, groups=list(vocab.group_indices.values())
        )
        columns = vocab.ungrouped_indices  # where micro-F1 is measured
        metrics["decision_threshold"] = fit_decision_threshold(
            preds.probs, targets, known, columns=columns
        )
        folds = np.asarray([s.clip_id % 2 for s in clips])
        metrics["micro_f1_fitted"] = cross_fitted_micro_f1(
            preds.probs, targets, known, columns=columns, folds=folds
        )
    return metrics
