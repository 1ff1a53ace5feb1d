"""Self-supervised pretraining on the pool, as a job: read the ready clips, train both branches
on audio-visual correspondence (``training.pretrain``), store the encoder weights.

The job row is the run's registry entry: on success its ``params`` gain ``artifact_uri`` (the
blob holding the branch weights), ``n_clips`` and the final ``metrics``; training rounds start
from the newest such run (``latest_pretrain``) unless the settings name weight files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from tagloop.config import Settings
from tagloop.db import jobs as job_repo
from tagloop.db.engine import session_scope
from tagloop.db.loop_state import PRETRAIN_JOB
from tagloop.db.models import Clip, Job
from tagloop.errors import InvalidInput
from tagloop.storage import BlobStore

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from tagloop.features.clip_tensor import ClipTensors
    from tagloop.training.backbone import Backbone
    from tagloop.training.pretrain import PretrainOptions

log = logging.getLogger(__name__)

# The service's pretraining step floor (``PretrainOptions.min_steps``) unless the settings set
# one. On the AV-digits pool (2,500 clips, 31 steps an epoch; seed 0) a probe on the frozen
# branches at 100 labels read 0.83 / 0.88 / 0.89 after 62 / 310 / 620 steps, the service's
# probe round 0.78 / 0.80 / 0.82; 620 steps took 193 s on one thread. A 20,000-clip pool
# makes 608 steps in its 2 default epochs, so the floor changes nothing there.
DEFAULT_MIN_STEPS = 600


def artifact_key(job_id: int) -> str:
    return f"pretrain/{job_id:06d}/encoders.pt"


def _progress(settings: Settings, job_id: int, fraction: float, message: str) -> None:
    with session_scope(settings.database_url) as session:
        job_repo.report_progress(
            session, job_repo.get_job(session, job_id), progress=fraction, message=message
        )


def pool_clip_uris(session: Session, *, limit: int) -> list[str]:
    """Tensor blobs of up to ``limit`` ready clips with sound, spread over the whole pool (every
    k-th id), labeled or not: the objective needs no labels, and the holdout clips give only
    pictures and sound here, never their tags."""
    rows = session.execute(
        select(Clip.id, Clip.tensor_uri)
        .where(Clip.status == "ready", Clip.has_audio.is_(True), Clip.tensor_uri.is_not(None))
        .order_by(Clip.id)
    ).all()
    uris = [str(uri) for _, uri in rows]
    if len(uris) <= limit:
        return uris
    step = len(uris) / limit
    return [uris[int(i * step)] for i in range(limit)]


def min_steps(settings: Settings) -> int:
    """The run's step floor: ``pretrain_min_steps``, else ``DEFAULT_MIN_STEPS``, but none
    when ``pretrain_epochs`` is set and the floor is not (an epoch count is taken as is)."""
    if settings.pretrain_min_steps is not None:
        return settings.pretrain_min_steps
    return 0 if settings.pretrain_epochs is not None else DEFAULT_MIN_STEPS


def pretrain_options(settings: Settings, *, seed: int) -> PretrainOptions:
    """The ``PretrainOptions`` a run uses under ``settings`` (the rest at their defaults)."""
    from tagloop.training.pretrain import PretrainOptions

    extra: dict[str, Any] = {
        "num_threads": settings.torch_threads,
        "seed": seed,
        "min_steps": min_steps(settings),
    }
    if settings.audio_frames is not None:
        extra["audio_frames"] = settings.audio_frames
    if settings.pretrain_epochs is not None:
        extra["epochs"] = settings.pretrain_epochs
    return PretrainOptions(**extra)


def pretrain_pool(*, settings: Settings, job_id: int, task_id: str | None = None) -> dict[str, Any]:
    """Run one pretraining job end to end; returns what was stored in the job's params."""
    import torch

    from tagloop.features.clip_tensor import load_clip_tensors
    from tagloop.fusion.config import FusionConfig
    from tagloop.training.pretrain import pack_pool, pretrain_encoders, save_encoder_state

    torch.set_num_threads(settings.torch_threads)
    store = BlobStore(settings.blob_url)
    with session_scope(settings.database_url) as session:
        job = job_repo.get_job(session, job_id)
        job_repo.start_job(session, job, celery_task_id=task_id)
        uris = pool_clip_uris(session, limit=settings.pretrain_max_clips)
    if len(uris) < 2:
        raise InvalidInput(
            "pretraining needs at least 2 ready clips with audio and pictures",
            code="pool_too_small",
        )
    config = FusionConfig(
        frames_per_clip=settings.frames_per_clip,
        frame_size=settings.frame_size,
        n_mels=settings.n_mels,
    )
    options = pretrain_options(settings, seed=job_id)

    def tensors() -> Iterator[ClipTensors]:
        for i, uri in enumerate(uris):
            if i % 500 == 0:
                _progress(settings, job_id, 0.2 * i / len(uris), f"reading clips {i}/{len(uris)}")
            yield load_clip_tensors(store.get_bytes(uri))

    pool = pack_pool(tensors(), config=config, options=options, total=len(uris))

    def on_epoch(epoch: int, total: int, record: dict[str, Any]) -> None:
        acc = record.get("retrieval_top1")
        detail = f", retrieval {acc:.2f}" if isinstance(acc, float) else ""
        _progress(settings, job_id, 0.2 + 0.75 * epoch / total, f"epoch {epoch}/{total}{detail}")

    result = pretrain_encoders(pool, config=config, options=options, progress=on_epoch)
    store.put_bytes(artifact_key(job_id), save_encoder_state(result))
    last = result.history[-1] if result.history else {}
    outcome = {
        "artifact_uri": artifact_key(job_id),
        "n_clips": result.n_clips,
        "fusion": config.to_dict(),
        "metrics": {k: v for k, v in last.items() if isinstance(v, int | float)},
        "seconds": round(result.seconds, 1),
    }
    with session_scope(settings.database_url) as session:
        job = job_repo.get_job(session, job_id)
        job.params = {**(job.params or {}), **outcome}
        job_repo.finish_job(
            session,
            job,
            status="succeeded",
            message=f"pretrained on {result.n_clips} clips in {result.seconds:.0f} s",
        )
    return outcome


def latest_pretrain(session: Session, *, fusion: dict[str, Any]) -> Job | None:
    """The newest succeeded pretraining run whose branches fit ``fusion`` (a FusionConfig
    dict): a run made before the clip tensor sizes changed cannot seed today's model."""
    runs = session.scalars(
        select(Job)
        .where(Job.kind == PRETRAIN_JOB, Job.status == "succeeded")
        .order_by(Job.id.desc())
        .limit(20)
    )
    for run in runs:
        params = run.params or {}
        if params.get("artifact_uri") and _branch_shape(params.get("fusion")) == _branch_shape(
            fusion
        ):
            return run
    return None


def _branch_shape(fusion: dict[str, Any] | None) -> tuple[Any, ...]:
    """What decides whether branch weights fit and mean the same: input sizes and channels."""
    keys = ("frame_size", "n_mels", "visual_channels", "audio_channels")
    return tuple(
        list(v) if isinstance(v, list | tuple) else v for v in ((fusion or {}).get(k) for k in keys)
    )


def pretrained_backbone(
    *, settings: Settings, store: BlobStore, run: Job, freeze: bool
) -> Backbone:
    """A Backbone over a local copy of ``run``'s weights (kept under the data dir, fetched
    once per machine: the blob store may be remote, torch.load wants a file)."""
    from tagloop.training.backbone import Backbone

    path = Path(settings.data_dir) / "cache" / f"pretrain-{run.id:06d}.pt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        partial.write_bytes(store.get_bytes(str(run.params["artifact_uri"])))
        partial.replace(path)  # never a half-written file under the final name
    return Backbone(visual=path, audio=path, freeze=freeze, pretrain_job=run.id)
