"""Task and queue names shared by the API (which enqueues by name) and the workers.

The API sends tasks by these names so it never imports the worker code (or torch).
"""

QUEUE_MEDIA = "media"
QUEUE_ML = "ml"

PROCESS_VIDEO = "tagloop.media.process_video"
RECOVER_STALE = "tagloop.media.recover_stale"

TRAIN = "tagloop.ml.train"

TASK_QUEUES = {PROCESS_VIDEO: QUEUE_MEDIA, RECOVER_STALE: QUEUE_MEDIA, TRAIN: QUEUE_ML}
