"""Use cases that the API, the tasks and the CLI call: one function each (DESIGN section 1).

A package rather than one module so each stage stays small: ``ingest`` (upload, import,
process_video, recovery, delete), ``training`` (train_round, promotion), ``scoring``
(score_pool, refill_queue).
"""

from tagloop.pipeline.ingest import (
    PROCESS_VIDEO_JOB,
    IngestResult,
    create_job,
    delete_video,
    describe_error,
    fail_job,
    ingest_path,
    ingest_stream,
    mark_failed,
    process_video,
    recover_stale_jobs,
    resolve_import_path,
)

__all__ = [
    "PROCESS_VIDEO_JOB",
    "IngestResult",
    "create_job",
    "delete_video",
    "describe_error",
    "fail_job",
    "ingest_path",
    "ingest_stream",
    "mark_failed",
    "process_video",
    "recover_stale_jobs",
    "resolve_import_path",
]
