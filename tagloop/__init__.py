"""tagloop: tag short videos with active learning."""

__version__ = "0.1.0"
