"""Extraction throughput against plain PyAV decoding, and peak memory on a 2-minute 1080p video.

``extract_vs_decode_ratio`` = (video seconds / wall seconds of one process running the
``process_video`` use case: decode, sample frames, resample audio, log-mel, H.264/AAC
previews, thumbnails, blob writes, database rows) divided by (video seconds / wall seconds
of PyAV decoding every video and audio frame of the same files with nothing else). Each side
runs in a fresh process, median of 3 runs. Target >= 0.5 (DESIGN section 9).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.benchmarks.common import WORK, peak_rss_gb, run_child

SHARED_VIDEOS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "videos"
MODULE = "tests.benchmarks.bench_extract"


def decode_only(paths: list[Path]) -> dict[str, float]:
    import av

    start = time.perf_counter()
    for path in paths:
        with av.open(str(path)) as container:
            for stream in container.streams:
                stream.thread_type = "AUTO"
            streams = [s for s in container.streams if s.type in ("video", "audio")]
            for packet in container.demux(streams):
                for _ in packet.decode():
                    pass
    return {"seconds": time.perf_counter() - start, "peak_rss_gb": peak_rss_gb()}


def extract(paths: list[Path]) -> dict[str, float]:
    # A worker imports these once at start; keep that import out of the timed region.
    import tagloop.features.clip_tensor
    import tagloop.media.extract  # noqa: F401
    from tagloop import pipeline
    from tagloop.config import Settings
    from tagloop.db.engine import session_scope
    from tagloop.db.migrate import upgrade_database
    from tagloop.storage import BlobStore

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        upgrade_database(settings.database_url)
        store = BlobStore(settings.blob_url)
        jobs = []
        with session_scope(settings.database_url) as session:
            for path in paths:
                r = pipeline.ingest_path(session, store=store, path=path, max_bytes=None)
                jobs.append((r.video.id, r.job_id, r.video.duration_s))
        start = time.perf_counter()
        for video_id, job_id, _ in jobs:
            status = pipeline.process_video(settings=settings, video_id=video_id, job_id=job_id)
            if status != "ready":
                raise RuntimeError(f"video {video_id} ended {status}")
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "video_seconds": sum(d or 0 for *_, d in jobs),
        "peak_rss_gb": peak_rss_gb(),
    }


def make_1080p_video() -> Path:
    from tests.video_factory import write_test_video

    path = WORK / "synthetic_1080p_120s.mp4"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial.mp4")
        write_test_video(tmp, seconds=120, width=1920, height=1080, fps=25, audio=True)
        tmp.rename(path)
    return path


def _median_runs(kind: str, paths: list[Path], runs: int) -> dict[str, Any]:
    results = [run_child(MODULE, kind, *map(str, paths)) for _ in range(runs)]
    return {
        "seconds": statistics.median(r["seconds"] for r in results),
        "peak_rss_gb": max(r["peak_rss_gb"] for r in results),
        "runs": [round(r["seconds"], 3) for r in results],
    }


def run(*, out: dict[str, Any], runs: int = 3) -> None:
    shared = sorted(p for p in SHARED_VIDEOS.iterdir() if p.is_file() and p.suffix != ".md")
    decode = _median_runs("decode", shared, runs)
    ext = _median_runs("extract", shared, runs)
    out["extract_vs_decode_ratio"] = round(decode["seconds"] / ext["seconds"], 3)
    out["extract_detail_shared_videos"] = {"files": len(shared), "decode": decode, "extract": ext}

    big = make_1080p_video()
    decode_big = _median_runs("decode", [big], 1)
    ext_big = _median_runs("extract", [big], 1)
    out["extract_peak_rss_gb_1080p_2min"] = round(ext_big["peak_rss_gb"], 3)
    out["extract_vs_decode_ratio_1080p_2min"] = round(decode_big["seconds"] / ext_big["seconds"], 3)
    out["extract_detail_1080p_2min"] = {"decode": decode_big, "extract": ext_big}


if __name__ == "__main__":
    kind, *files = sys.argv[1:]
    fn = {"decode": decode_only, "extract": extract}[kind]
    print(json.dumps(fn([Path(f) for f in files])))
