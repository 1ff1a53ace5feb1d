"""Choose the visual embedding's input side R and keyframe count K by measurement.

Clips: CIFAR-10 photographs (shared data) upscaled to 48x48 and panned left to right across
a grey 64x64 frame for 1 s (25 fps H.264), so keyframes at different times see the object at
different places. For each R in ``--sides`` and K in ``--keyframes``:

- accuracy: a logistic regression (scikit-learn, C=1, standardised inputs) on the clip
  embeddings of ``--n-train`` clips, scored on ``--n-test`` others (balanced classes), next to
  the same probe on the pixels (the 64x64 middle frame area-pooled to 16x16, as the fixed
  features floor sees them). Keyframes go through the production conversion
  (``media.frames.stack_model_frames``) from the decoded video frames.
- speed: clips per second of one thread (``torch.set_num_threads(1)``, as a worker runs)
  for ``--n-time`` clips through the ingest path: ``iter_clip_media`` (decode, 8 model frames,
  preview, thumbnail, K keyframes at R) then ``embed_keyframes``. Reported as wall clock and
  as CPU time (the process's, all its threads): on a shared machine the wall clock also
  counts other people's work.

Accuracy is measured at K=1 for every R, and for every K at ``--k-sides`` (embedding 7
keyframes per clip at R=224 would take minutes on 2 busy cores).

    python -m tests.benchmarks.bench_embed [--n-train 600 --n-test 400 --n-time 30]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F

from tests.benchmarks.common import REPO

CIFAR = REPO.parent / "shared" / "data" / "cifar10" / "train_subset.npz"
FPS, SIDE, OBJECT, SECONDS = 25, 64, 48, 1.0


def clip_frames(image: np.ndarray) -> np.ndarray:
    """``(32, 32, 3)`` uint8 -> ``(25, 64, 64, 3)`` uint8: the photo at 48 px panning across."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    big = F.interpolate(x, size=OBJECT, mode="bilinear", align_corners=False)[0]
    big = big.round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    n = round(SECONDS * FPS)
    out = np.full((n, SIDE, SIDE, 3), 118, np.uint8)
    top = (SIDE - OBJECT) // 2
    for i in range(n):
        left = round(i * (SIDE - OBJECT) / (n - 1))
        out[i, top : top + OBJECT, left : left + OBJECT] = big
    return out


def write_clip(path: Path, frames: np.ndarray) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width = stream.height = SIDE
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        stream.codec_context.time_base = Fraction(1, FPS)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def pick(labels: np.ndarray, n: int, *, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    per = n // 10
    return np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per] for c in range(10)])


def decoded_keyframes(path: Path, counts: tuple[int, ...]) -> dict[int, list[av.VideoFrame]]:
    """The decoded frames on screen at each K's keyframe times (as the extractor picks them)."""
    from tagloop.media.frames import FramesAt, sample_times

    picks = {k: FramesAt(sample_times(0.0, SECONDS, count=k)) for k in counts}
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            for chooser in picks.values():
                chooser.offer(frame, time_s=float(frame.time or 0.0))
    return {k: chooser.chosen() or [] for k, chooser in picks.items()}


def probe_accuracy(train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train)
    model = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(train), y_train)
    return float(model.score(scaler.transform(test), y_test))


def measure_accuracy(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from tagloop.features.visual_embedding import embed_clips
    from tagloop.media.frames import stack_model_frames

    data = np.load(CIFAR)
    images, labels = data["images"], data["labels"]
    chosen = pick(labels, args.n_train + args.n_test, seed=0)
    rng = np.random.default_rng(1)
    chosen = rng.permutation(chosen)
    train_idx, test_idx = chosen[: args.n_train], chosen[args.n_train :]
    counts = tuple(sorted(set(args.keyframes) | {1}))
    frames: list[dict[int, list[av.VideoFrame]]] = []
    for i, index in enumerate(chosen):
        path = write_clip(work / f"clip{i}.mp4", clip_frames(images[index]))
        frames.append(decoded_keyframes(path, counts))
    y = labels[chosen]
    n = args.n_train
    middle = np.stack([stack_model_frames(f[1], size=SIDE)[0] for f in frames])
    pixels = F.adaptive_avg_pool2d(torch.from_numpy(middle).float(), 16).flatten(1).numpy()
    result: dict[str, Any] = {"pixels": probe_accuracy(pixels[:n], y[:n], pixels[n:], y[n:])}
    print(f"pixels: {result['pixels']:.3f}", flush=True)
    for side in args.sides:
        for k in counts:
            if k != 1 and side not in args.k_sides:
                continue
            keys = np.stack([stack_model_frames(f[k], size=side) for f in frames])
            emb = embed_clips(keys, side=side)
            acc = probe_accuracy(emb[:n], y[:n], emb[n:], y[n:])
            result[f"R{side}_K{k}"] = acc
            print(f"R={side} K={k}: {acc:.3f}", flush=True)
    del train_idx, test_idx
    return result


def measure_speed(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from tagloop.features.visual_embedding import embed_keyframes, visual_encoder
    from tagloop.media.extract import iter_clip_media
    from tagloop.media.probe import probe_media

    torch.set_num_threads(1)
    data = np.load(CIFAR)
    paths = [
        write_clip(work / f"time{i}.mp4", clip_frames(data["images"][i]))
        for i in range(args.n_time)
    ]
    infos = [probe_media(str(p)) for p in paths]
    visual_encoder()

    def run(side: int, k: int) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        for path, info in zip(paths, infos, strict=True):
            for media in iter_clip_media(
                str(path),
                info=info,
                clip_seconds=10.0,
                frames_per_clip=8,
                frame_size=32,
                sample_rate=16_000,
                preview_height=240,
                keyframes=k,
                keyframe_size=side,
            ):
                if k and media.keyframes is not None:
                    embed_keyframes(media.keyframes, side=side)
        n = len(paths)
        return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)

    run(args.sides[0], 1)  # warm up the decoder and the network
    result: dict[str, Any] = {}
    base_wall, base_cpu = run(0, 0)
    result["extract_only"] = {"wall": base_wall, "cpu": base_cpu}
    print(f"extract only: {base_wall:.1f} clips/s wall, {base_cpu:.1f} cpu", flush=True)
    for side in args.sides:
        for k in args.keyframes:
            wall, cpu = run(side, k)
            result[f"R{side}_K{k}"] = {"wall": wall, "cpu": cpu}
            print(f"R={side} K={k}: {wall:.1f} clips/s wall, {cpu:.1f} cpu", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-train", type=int, default=600)
    parser.add_argument("--n-test", type=int, default=400)
    parser.add_argument("--n-time", type=int, default=30)
    parser.add_argument("--sides", type=int, nargs="+", default=[96, 128, 160, 224])
    parser.add_argument("--keyframes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--k-sides", type=int, nargs="+", default=[128])
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_speed:
            out["clips_per_s"] = measure_speed(args, Path(tmp))
        torch.set_num_threads(2)
        if not args.skip_accuracy:
            out["accuracy"] = measure_accuracy(args, Path(tmp))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
