"""Media I/O with PyAV only: probe, clip planning, one-pass extraction, previews.

No torch here: the API imports :func:`~tagloop.media.probe.probe_media` to check uploads.
"""
