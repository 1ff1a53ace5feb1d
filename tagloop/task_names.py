"""Task and queue names shared by the API (which enqueues by name) and the workers.

The API sends tasks by these names so it never imports the worker code (or torch).
"""

QUEUE_MEDIA = "media"
QUEUE_ML = "ml"

PROCESS_VIDEO = "tagloop.media.process_video"
RECOVER_STALE = "tagloop.media.recover_stale"

TRAIN = "tagloop.ml.train"
SCORE = "tagloop.ml.score"
REFILL_QUEUE = "tagloop.ml.refill_queue"
RETRAIN_IF_DUE = "tagloop.ml.retrain_if_due"

TASK_QUEUES = {
    PROCESS_VIDEO: QUEUE_MEDIA,
    RECOVER_STALE: QUEUE_MEDIA,
    TRAIN: QUEUE_ML,
    SCORE: QUEUE_ML,
    REFILL_QUEUE: QUEUE_ML,
    RETRAIN_IF_DUE: QUEUE_ML,
}
