"""Task and queue names shared by the API (which enqueues by name) and the workers.

The API sends tasks by these names so it never imports the worker code (or torch).
"""

QUEUE_MEDIA = "media"
QUEUE_ML = "ml"
# Light, latency-bound work (the tick, refills) has its own queue and worker, so an annotator
# never waits for a refill behind a training round or a long video.
QUEUE_LOOP = "loop"
ALL_QUEUES = (QUEUE_MEDIA, QUEUE_ML, QUEUE_LOOP)

PROCESS_VIDEO = "tagloop.media.process_video"
RECOVER_STALE = "tagloop.media.recover_stale"
SWEEP_BLOBS = "tagloop.media.sweep_blobs"

TRAIN = "tagloop.ml.train"
SCORE = "tagloop.ml.score"
PRETRAIN = "tagloop.ml.pretrain"
REFILL_QUEUE = "tagloop.loop.refill_queue"
LOOP_TICK = "tagloop.loop.tick"

TASK_QUEUES = {
    PROCESS_VIDEO: QUEUE_MEDIA,
    RECOVER_STALE: QUEUE_MEDIA,
    SWEEP_BLOBS: QUEUE_MEDIA,
    TRAIN: QUEUE_ML,
    SCORE: QUEUE_ML,
    PRETRAIN: QUEUE_ML,
    REFILL_QUEUE: QUEUE_LOOP,
    LOOP_TICK: QUEUE_LOOP,
}
