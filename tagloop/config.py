"""The one Settings object. Nothing else in tagloop reads the environment.

Every field can be set as ``TAGLOOP_<NAME>`` (nested models with ``__``), e.g.
``TAGLOOP_DATA_DIR=/srv/tagloop`` or ``TAGLOOP_DATABASE_URL=postgresql+psycopg://...``.
URLs left empty are derived from ``data_dir`` so a laptop needs no configuration at all.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

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
    # A new version is promoted unless its validation score is worse than the promoted
    # version's, on the same validation clips, by more than this.
    promote_tolerance: float = 0.01
    torch_threads: int = 2
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
    selection_strategy: str = "entropy"
    queue_size: int = 100
    per_video_cap: int = 3
    score_batch_size: int = 256
    mc_passes: int = 8
    seed_candidates: int = 5000

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
    # How often a worker polls the embedded SQLAlchemy broker for work.
    broker_poll_seconds: float = 0.2
    # Redis redelivers an unacked task after this many seconds (a killed worker's task).
    broker_visibility_timeout: int = 3600

    # How the CLI, the UI and `tagloop up` reach the API.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    ui_port: int = 8501
    api_url: str = ""  # default: http://<api_host>:<api_port>
    # uvicorn worker processes for the API under `tagloop up` (one per core is typical).
    api_workers: int = 1

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


@lru_cache
def get_settings() -> Settings:
    """Settings read once per process; tests call ``get_settings.cache_clear()``."""
    return Settings()
