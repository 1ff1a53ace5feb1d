"""Self-supervised audio-visual pretraining of the visual and audio branches on unlabeled clips.

Objective: symmetric InfoNCE (CLIP-style) with in-batch negatives. Each branch's LAST block
output goes through a small projection head (Linear-ReLU-Linear, L2-normalised); for a batch of
B clips the B x B cosine similarities over ``temperature`` are scored by a cross-entropy that
picks each clip's own sound among the batch's B sounds, and its own picture among B pictures,
averaged over both directions. Why InfoNCE and not AV correspondence (a binary "do these
belong together" classifier on shuffled pairs): the encoders dominate the cost on 2 CPU cores
and InfoNCE gets B - 1 negatives per clip from one forward pass where AVC gets one, and its
similarity matrix is also the retrieval metric the progress reports. Its known weak spot,
same-class clips among the negatives, is softened by a moderate temperature (0.2): the loss
then asks for "closer than most", not "closest of all".

The pool is first packed (``pack_pool``): only clips with audio, at most ``STORED_FRAMES``
evenly spaced frames each (uint8), the log-mel cut to ``audio_frames`` leading columns as
float16, so 20,000 clips take 0.53 GB at the default sizes. A fixed held-back set (up to
512 clips, never trained on) gives the per-epoch cross-modal retrieval accuracy: top-1
audio->visual within chunks of ``batch_size`` clips (chance ``1 / batch_size``).

Only the branch weights are returned, keyed ``visual.*`` / ``audio.*``, so the file written
from ``save_encoder_state`` loads through ``tagloop.training.backbone`` into any model with
``.visual`` / ``.audio`` branches (CentralNet and the baselines).
"""

from __future__ import annotations

import io
import math
import pickle
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tagloop.errors import InvalidInput
from tagloop.features.clip_tensor import ClipTensors
from tagloop.fusion.branch import AudioBranch, VisualBranch
from tagloop.fusion.config import FusionConfig
from tagloop.training.augment import shift_frames
from tagloop.training.dataset import crop_logmel

STORED_FRAMES = 4  # frames kept per packed clip; each step samples ``frames_used`` of them
FORMAT = "tagloop.pretrain/1"
_MAX_HELD_BACK = 512
_MIN_CLIPS = 10
_EVAL_BATCH = 256
_GRAD_CLIP = 5.0

# InfoNCE scores each clip against its batch mates: a batch of one has nothing to beat.
_INT_MINIMUMS = {
    "epochs": 1,
    "min_steps": 0,
    "batch_size": 2,
    "embed_dim": 1,
    "frames_used": 1,
    "audio_frames": 1,
    "max_clips": _MIN_CLIPS,
    "frame_shift": 0,
    "max_audio_shift": 0,
    "seed": 0,
    "num_threads": 1,
}

Progress = Callable[[int, int, dict[str, Any]], None]
PackProgress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class PretrainOptions:
    """How the encoders are pretrained; stored with the weights (``to_dict``).

    min_steps: the fewest optimiser steps a run takes: on a small pool ``epochs`` is raised
        until it gets there (``planned_epochs``); 0 takes ``epochs`` as is.
    frames_used: frames per clip in each training step (a random pick among the packed ones);
        the visual cost is linear in it. audio_frames: log-mel columns kept per clip.
    max_clips: at most this many clips with audio are packed (a seeded reservoir sample of
        the stream, so the choice does not depend on knowing the pool size).
    frame_shift / max_audio_shift: augmentation, the largest frame offset in pixels and
        log-mel time shift in columns (0 disables).
    """

    # Defaults tuned on AV digits tiled to 20,000 clips (tests/benchmarks/bench_pretrain.py):
    # smaller batches beat larger ones per second (more steps), 0.2 beat 0.1 and 0.5, 5e-3
    # was worse than 2e-3, and a third epoch did not lift the probe (0.900 vs 0.902).
    epochs: int = 2
    # 0 here, so options mean what they say; the service's floor is Settings.pretrain_min_steps.
    min_steps: int = 0
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.2
    embed_dim: int = 64
    frames_used: int = 2
    audio_frames: int = 128
    max_clips: int = 20_000
    frame_shift: int = 2
    max_audio_shift: int = 8
    seed: int = 0
    num_threads: int = 2

    def __post_init__(self) -> None:
        for name, low in _INT_MINIMUMS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInput(
                    f"{name} must be an integer >= {low}, got {value!r}",
                    code="bad_pretrain_options",
                )
        for name, zero_ok in (("lr", False), ("temperature", False), ("weight_decay", True)):
            value = getattr(self, name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
                raise InvalidInput(
                    f"{name} must be a finite number {'>=' if zero_ok else '>'} 0, got {value!r}",
                    code="bad_pretrain_options",
                )

    @property
    def stored_frames(self) -> int:
        """Frames per clip in a packed pool: enough to pick ``frames_used`` from."""
        return max(STORED_FRAMES, self.frames_used)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainOptions:
        """Inverse of ``to_dict``; missing keys take their defaults, unknown ones are refused."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise InvalidInput(
                f"unknown PretrainOptions keys: {unknown}", code="bad_pretrain_options"
            )
        return cls(**data)


@dataclass(frozen=True)
class PackedPool:
    """Clips with audio, packed for pretraining.

    frames ``(N, F, 3, H, W)`` uint8 (F = ``options.stored_frames``); logmel
    ``(N, n_mels, audio_frames)`` float16; source_index ``(N,)`` int64, each clip's position in
    the input stream. n_seen: clips read; n_without_audio: of those, left out for lack of audio.
    """

    frames: torch.Tensor
    logmel: torch.Tensor
    source_index: torch.Tensor
    n_seen: int
    n_without_audio: int

    def __len__(self) -> int:
        return int(self.source_index.shape[0])

    @property
    def nbytes(self) -> int:
        return sum(
            t.element_size() * t.nelement() for t in (self.frames, self.logmel, self.source_index)
        )


def even_index(n_in: int, n_out: int) -> torch.Tensor:
    """``n_out`` evenly spaced positions in ``range(n_in)`` (repeats when ``n_in < n_out``)."""
    index = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * n_in / n_out).long()
    return index.clamp_max(n_in - 1)


def _check_clip(clip: ClipTensors, *, config: FusionConfig, position: int) -> None:
    frames, logmel = clip.frames, clip.logmel
    size = config.frame_size
    if (
        frames.dtype != torch.uint8
        or frames.ndim != 4
        or tuple(frames.shape[1:]) != (3, size, size)
    ):
        raise InvalidInput(
            f"clip {position}: frames must be (T, 3, {size}, {size}) uint8, got "
            f"{tuple(frames.shape)} {frames.dtype}",
            code="ragged_clips",
        )
    if frames.shape[0] < 1:
        raise InvalidInput(f"clip {position} has no frames", code="ragged_clips")
    if logmel.ndim != 2 or logmel.shape[0] != config.n_mels or logmel.shape[1] < 1:
        raise InvalidInput(
            f"clip {position}: logmel must be ({config.n_mels}, S), got {tuple(logmel.shape)}",
            code="ragged_clips",
        )


@contextmanager
def one_thread() -> Iterator[None]:
    """Run many tiny per-clip copies on one thread: with two, OpenMP's hand-offs cost more
    than the copies (packing took 100x longer on a loaded 2-core machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def grow(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """``tensor`` with uninitialised rows appended up to ``rows``."""
    return torch.cat([tensor, tensor.new_empty((rows - tensor.shape[0], *tensor.shape[1:]))])


def pack_pool(
    tensors: Iterable[ClipTensors],
    *,
    config: FusionConfig,
    options: PretrainOptions,
    total: int | None = None,
    progress: PackProgress | None = None,
) -> PackedPool:
    """Read the clips once (any iterable, e.g. a generator over a blob store) into a
    :class:`PackedPool`; ``total`` (the stream's length, if known) sizes the buffers up front
    and is passed to ``progress(n_read, total)``, called every 1,024 clips and at the end.

    Memory stays bounded by ``options.max_clips`` whatever the stream's length: past it, a
    seeded reservoir sample (Algorithm R) decides which clips stay.
    """
    limit = options.max_clips
    capacity = min(limit, total) if total else min(limit, 1024)
    n_frames = options.stored_frames
    size = config.frame_size
    frames = torch.empty((max(capacity, 1), n_frames, 3, size, size), dtype=torch.uint8)
    logmel = torch.empty(
        (max(capacity, 1), config.n_mels, options.audio_frames), dtype=torch.float16
    )
    source = torch.empty(max(capacity, 1), dtype=torch.int64)
    rng = np.random.default_rng(options.seed)
    kept = seen = silent = 0
    with one_thread():
        for position, clip in enumerate(tensors):
            seen = position + 1
            if progress is not None and seen % 1024 == 0:
                progress(seen, total)
            if not clip.audio_mask:
                silent += 1
                continue
            _check_clip(clip, config=config, position=position)
            n_audio = position - silent  # clips with audio before this one
            if n_audio < limit:
                slot = n_audio
                if slot >= frames.shape[0]:  # grow by doubling, up to the limit
                    rows = min(limit, 2 * frames.shape[0])
                    frames, logmel, source = (grow(t, rows) for t in (frames, logmel, source))
                kept += 1
            else:
                slot = int(rng.integers(0, n_audio + 1))
                if slot >= limit:
                    continue
            frames[slot] = clip.frames[even_index(clip.frames.shape[0], n_frames)]
            window = crop_logmel(clip.logmel[None].float(), audio_frames=options.audio_frames)
            logmel[slot] = window[0].to(torch.float16)
            source[slot] = position
    if progress is not None:
        progress(seen, total)
    if kept < frames.shape[0]:
        # A smaller pool than the buffers were sized for: copy, so the spare rows are freed.
        frames, logmel, source = frames[:kept].clone(), logmel[:kept].clone(), source[:kept].clone()
    return PackedPool(
        frames=frames, logmel=logmel, source_index=source, n_seen=seen, n_without_audio=silent
    )


def planned_epochs(options: PretrainOptions, *, steps_per_epoch: int) -> int:
    """``options.epochs``, raised until they make ``options.min_steps`` optimiser steps: an
    epoch is ``steps_per_epoch`` steps, so 2 epochs over 2,500 clips are only 62 steps and
    leave the encoders under-trained, while a pool of 20,000 clips is already past any floor
    (and never larger: ``max_clips`` caps it)."""
    return max(options.epochs, math.ceil(options.min_steps / max(steps_per_epoch, 1)))


def init_branches(config: FusionConfig, *, seed: int) -> tuple[VisualBranch, AudioBranch]:
    """The branches pretraining starts from for ``seed`` (the random-init baseline)."""
    torch.manual_seed(seed)
    return VisualBranch(config), AudioBranch(config)


def projection_head(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """``(B, in_dim) -> (B, out_dim)``; thrown away after pretraining, as in SimCLR/CLIP."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)
    )


class AVContrast(nn.Module):
    """Both branches plus their projection heads: clips -> unit-norm ``(B, embed_dim)`` pairs."""

    def __init__(
        self, visual: VisualBranch, audio: AudioBranch, *, hidden_dim: int, embed_dim: int
    ) -> None:
        super().__init__()
        self.visual = visual
        self.audio = audio
        self.visual_head = projection_head(visual.feature_dims[-1], hidden_dim, embed_dim)
        self.audio_head = projection_head(audio.feature_dims[-1], hidden_dim, embed_dim)

    def forward(
        self, frames: torch.Tensor, logmel: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """frames ``(B, T, 3, H, W)`` uint8, logmel ``(B, n_mels, S)`` -> two ``(B, D)``."""
        present = torch.ones(logmel.shape[0], dtype=torch.bool)
        visual = self.visual_head(self.visual(frames)[-1])
        audio = self.audio_head(self.audio(logmel, present)[-1])
        return F.normalize(visual, dim=1), F.normalize(audio, dim=1)


def info_nce(visual: torch.Tensor, audio: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE of unit-norm ``(B, D)`` pairs; row i of each belongs to clip i."""
    logits = audio @ visual.T / temperature  # (B, B): audio i against every picture
    target = torch.arange(logits.shape[0])
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def retrieval_top1(visual: torch.Tensor, audio: torch.Tensor, *, chunk: int) -> float:
    """Share of clips whose sound's nearest picture, among ``chunk`` clips, is its own."""
    hits = total = 0
    for first in range(0, visual.shape[0] - chunk + 1, chunk):
        sims = audio[first : first + chunk] @ visual[first : first + chunk].T
        hits += int((sims.argmax(dim=1) == torch.arange(chunk)).sum())
        total += chunk
    return hits / total


def chunk_loss(
    visual: torch.Tensor, audio: torch.Tensor, *, chunk: int, temperature: float
) -> float:
    """Mean InfoNCE over consecutive chunks of ``chunk`` clips (the held-back "batches")."""
    with torch.no_grad():
        losses = [
            float(info_nce(visual[i : i + chunk], audio[i : i + chunk], temperature=temperature))
            for i in range(0, visual.shape[0] - chunk + 1, chunk)
        ]
    return float(np.mean(losses))


def shift_time(logmel: torch.Tensor, *, max_shift: int) -> torch.Tensor:
    """``(B, n_mels, S)`` -> same shape, each clip moved by up to ``max_shift`` columns either
    way; the exposed edge repeats the edge column (background, not a made-up silence)."""
    if max_shift == 0:
        return logmel
    batch, bands, columns = logmel.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (batch, 1))
    index = (torch.arange(columns)[None, :] - shifts).clamp(0, columns - 1)  # (B, S)
    return torch.gather(logmel, 2, index[:, None, :].expand(-1, bands, -1))


def sample_frames(frames: torch.Tensor, *, k: int) -> torch.Tensor:
    """``(B, F, 3, H, W)`` -> ``(B, k, 3, H, W)``: k distinct random frames per clip."""
    pick = torch.rand(frames.shape[:2]).argsort(dim=1)[:, :k]  # (B, k)
    return frames[torch.arange(frames.shape[0])[:, None], pick]


def embed_pool(
    model: AVContrast, pool: PackedPool, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unaugmented embeddings of ``rows`` (every packed frame): two ``(len(rows), D)``."""
    model.eval()
    visual, audio = [], []
    with torch.no_grad():
        for first in range(0, len(rows), _EVAL_BATCH):
            index = rows[first : first + _EVAL_BATCH]
            v, a = model(pool.frames[index], pool.logmel[index].float())
            visual.append(v)
            audio.append(a)
    return torch.cat(visual), torch.cat(audio)


@dataclass
class PretrainResult:
    """state: branch weights only, ``visual.<key>`` / ``audio.<key>``. history: one record
    per epoch (loss, held-back loss and retrieval top-1, its chance level, seconds)."""

    state: dict[str, torch.Tensor]
    history: list[dict[str, Any]]
    seconds: float
    n_clips: int
    config: FusionConfig
    options: PretrainOptions


def pretrain_encoders(
    pool: PackedPool,
    *,
    config: FusionConfig,
    options: PretrainOptions,
    progress: Progress | None = None,
) -> PretrainResult:
    """Train both branches (and throwaway heads) with symmetric InfoNCE on ``pool``.

    Deterministic for ``options.seed`` and thread count. ``progress(epoch, epochs, record)``
    is called after each epoch with that epoch's history record.
    """
    start_time = time.perf_counter()
    n = len(pool)
    if n < _MIN_CLIPS:
        raise InvalidInput(
            f"pretraining needs at least {_MIN_CLIPS} clips with audio, the pool has {n}",
            code="too_few_clips",
        )
    expected = (3, config.frame_size, config.frame_size)
    if tuple(pool.frames.shape[2:]) != expected or pool.logmel.shape[1] != config.n_mels:
        raise InvalidInput(
            f"the pool (frames {tuple(pool.frames.shape[1:])}, logmel "
            f"{tuple(pool.logmel.shape[1:])}) was not packed for this FusionConfig",
            code="ragged_clips",
        )
    if pool.frames.shape[1] < options.frames_used:
        raise InvalidInput(
            f"the pool keeps {pool.frames.shape[1]} frames per clip, frames_used is "
            f"{options.frames_used}",
            code="bad_pretrain_options",
        )
    torch.set_num_threads(options.num_threads)
    visual, audio = init_branches(config, seed=options.seed)
    model = AVContrast(visual, audio, hidden_dim=config.hidden_dim, embed_dim=options.embed_dim)
    shuffle = torch.Generator().manual_seed(options.seed)
    order = torch.randperm(n, generator=shuffle)
    n_held = min(n // 5, _MAX_HELD_BACK)
    held, train = order[:n_held], order[n_held:]
    batch_size = min(options.batch_size, len(train))
    chunk = min(options.batch_size, n_held)
    steps_per_epoch = len(train) // batch_size  # the short last batch is dropped: too easy
    epochs = planned_epochs(options, steps_per_epoch=steps_per_epoch)
    total_steps = epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=options.lr, weight_decay=options.weight_decay
    )
    # Cosine decay over the planned steps after a short linear warm-up (the heads start random
    # and the first InfoNCE gradients are large).
    warmup = max(1, min(steps_per_epoch, total_steps // 10))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            min(1.0, (step + 1) / warmup)
            * 0.5
            * (1 + math.cos(math.pi * min(step / total_steps, 1.0)))
        ),
    )
    history: list[dict[str, Any]] = []
    for epoch in range(1, epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        perm = train[torch.randperm(len(train), generator=shuffle)]
        losses = []
        for step in range(steps_per_epoch):
            index = perm[step * batch_size : (step + 1) * batch_size]
            frames = sample_frames(pool.frames[index], k=options.frames_used)
            frames = shift_frames(frames, max_shift=options.frame_shift)
            logmel = shift_time(pool.logmel[index].float(), max_shift=options.max_audio_shift)
            v, a = model(frames, logmel)
            loss = info_nce(v, a, temperature=options.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), _GRAD_CLIP)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        v, a = embed_pool(model, pool, held)
        record: dict[str, Any] = {
            "epoch": epoch,
            "loss": float(np.mean(losses)),
            "held_loss": chunk_loss(v, a, chunk=chunk, temperature=options.temperature),
            "retrieval_top1": retrieval_top1(v, a, chunk=chunk),
            "retrieval_chance": 1.0 / chunk,
            "seconds": time.perf_counter() - epoch_start,
        }
        history.append(record)
        if progress is not None:
            progress(epoch, epochs, record)
    state = {f"visual.{k}": t.detach().clone() for k, t in model.visual.state_dict().items()}
    state.update({f"audio.{k}": t.detach().clone() for k, t in model.audio.state_dict().items()})
    return PretrainResult(
        state=state,
        history=history,
        seconds=time.perf_counter() - start_time,
        n_clips=n,
        config=config,
        options=options,
    )


def save_encoder_state(result: PretrainResult) -> bytes:
    """The branch weights under ``"state_dict"`` plus what made them, as ``torch.save`` bytes.

    Written to a file, ``backbone.read_branch_state(path, branch=...)`` reads it as is.
    """
    buffer = io.BytesIO()
    torch.save(
        {
            "format": FORMAT,
            "state_dict": result.state,
            "config": result.config.to_dict(),
            "options": result.options.to_dict(),
            "n_clips": result.n_clips,
            "history": result.history,
            "seconds": result.seconds,
        },
        buffer,
    )
    return buffer.getvalue()


def load_encoder_state(data: bytes) -> PretrainResult:
    """Inverse of :func:`save_encoder_state`; ``weights_only``, so the bytes cannot run code."""
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError) as exc:
        raise InvalidInput(
            f"not a pretrained encoder file: {exc}"[:500], code="bad_encoder_state"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InvalidInput(f"not a {FORMAT} file", code="bad_encoder_state")
    return PretrainResult(
        state=dict(payload["state_dict"]),
        history=list(payload["history"]),
        seconds=float(payload["seconds"]),
        n_clips=int(payload["n_clips"]),
        config=FusionConfig.from_dict(payload["config"]),
        options=PretrainOptions.from_dict(payload["options"]),
    )
