"""A long-tailed multi-label AV set: what each clip shows and says, decided from a seed.

Each clip is a 2x2 grid with 1-3 MNIST digits (``seen_0`` .. ``seen_9``, independent tags) and
0-2 FSDD recordings of one speaker (``heard_0`` .. ``heard_9``, independent; none: ``silent``),
over one background noise (group ``noise``), in one colour tint (group ``tint``), maybe
``inverted``, ``moving`` or ``blurred``. Three tags need both modalities: ``match`` (a heard
digit is also seen), ``same_count`` (as many utterances as digits on screen) and
``heard_above_seen`` (the largest heard digit is above the largest seen one).

Digits, noises and tints are drawn from Zipf-like weights, so tag frequencies are long-tailed:
on the 20,000-clip pool of seed 0 the head (``tint_grey``) is on 85% of clips, ``seen_1`` on 72%,
the tail (``heard_4``, ``noise_clicks``) on about 1%: 81x, and 68x among ungrouped tags alone.
A spoken digit repeats a digit on screen with ``COPY_SEEN`` (the video shows what is said,
sometimes), so ``match`` is common enough to learn.

Split: ``test`` clips use only the held-out FSDD speaker and the held-out MNIST images (index
``% 5 == 4``, a fixed 20% of the MNIST test set); ``pool`` clips use neither. Specs are cheap
(labels.csv columns and MNIST labels only, no audio or pixels): ``long_tail_render`` turns them
into waveforms, frames and clip tensors.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from tagloop.errors import InvalidInput, NotFound
from tagloop.vocabulary import TagVocabulary

# Fixed Zipf rank orders (most frequent first); seen and heard differ so that one modality's
# prior does not give away the other's digits.
SEEN_ORDER = (1, 7, 0, 3, 2, 8, 4, 6, 9, 5)
HEARD_ORDER = (2, 5, 9, 1, 6, 0, 8, 3, 7, 4)
SEEN_ZIPF = 1.6
HEARD_ZIPF = 2.3
N_SEEN_P = (0.45, 0.35, 0.20)  # 1, 2 or 3 digits on screen
N_HEARD_P = (0.06, 0.74, 0.20)  # 0, 1 or 2 utterances
COPY_SEEN = 0.3  # chance that an utterance names a digit on screen
NOISES = ("none", "white", "pink", "brown", "hum", "beeps", "clicks")
NOISE_P = (0.46, 0.24, 0.13, 0.09, 0.05, 0.02, 0.01)
TINTS = ("grey", "red", "green", "blue")
TINT_P = (0.85, 0.09, 0.045, 0.015)
P_INVERTED, P_MOVING, P_BLURRED = 0.02, 0.12, 0.08
SNR_DB = (3.0, 15.0)  # noise level relative to the speech, uniform
ONSET_S = (0.0, 0.1)  # silence before the first utterance
GAP_S = (0.03, 0.12)  # silence between two utterances
SPEECH_END_S = 1.2  # speech ends here: the model's default 128-column window sees all of it
CLIP_SECONDS = 1.5
MAX_SHIFT_PX = 6.0  # on the 64-px canvas: how far a moving digit travels from the centre
TEST_SPEAKER = "theo"
MNIST_TEST_MODULUS = 5  # MNIST index % 5 == 4 is held out for the test split

NOISE_GROUP = "noise"
TINT_GROUP = "tint"
CROSS_MODAL_TAGS = ("match", "same_count", "heard_above_seen")


@dataclass(frozen=True)
class FsddTable:
    """The labels.csv columns the spec needs; row ``r`` is ``files[r]``."""

    files: tuple[str, ...]
    digits: np.ndarray  # int64 (R,)
    speakers: tuple[str, ...]
    seconds: np.ndarray  # float64 (R,)


@dataclass(frozen=True)
class ClipSpec:
    """One clip, fully decided: the renderer adds no randomness but ``render_seed``'s noise.

    seen/images/cells: digits on screen, their MNIST indices and 2x2 grid cells (0-3).
    heard/recordings/onsets_s: utterances, their FSDD table rows and start times.
    shift_px: (dx, dy) travel over the clip on the 64-px canvas; (0, 0) when not moving.
    """

    index: int
    split: str
    seen: tuple[int, ...]
    images: tuple[int, ...]
    cells: tuple[int, ...]
    heard: tuple[int, ...]
    recordings: tuple[int, ...]
    onsets_s: tuple[float, ...]
    speaker: str
    noise: str
    snr_db: float
    tint: str
    inverted: bool
    shift_px: tuple[float, float]
    blurred: bool
    render_seed: int
    tags: tuple[str, ...]


@lru_cache(maxsize=1)
def long_tail_vocab() -> TagVocabulary:
    """The 38 tags in a fixed order: seen, heard, silent, noise group, tint group, visual style,
    cross-modal."""
    pairs: list[tuple[str, str | None]] = [(f"seen_{d}", None) for d in range(10)]
    pairs += [(f"heard_{d}", None) for d in range(10)]
    pairs.append(("silent", None))
    pairs += [(f"noise_{n}", NOISE_GROUP) for n in NOISES]
    pairs += [(f"tint_{t}", TINT_GROUP) for t in TINTS]
    pairs += [("inverted", None), ("moving", None), ("blurred", None)]
    pairs += [(t, None) for t in CROSS_MODAL_TAGS]
    return TagVocabulary.from_pairs(pairs)


def read_fsdd_table(fsdd_dir: Path) -> FsddTable:
    """``fsdd_dir/labels.csv`` as columns (lengths from ``n_samples / sr``, no audio read)."""
    labels = fsdd_dir / "labels.csv"
    if not labels.is_file():
        raise NotFound(f"FSDD labels {labels} do not exist", code="dataset_missing")
    with labels.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    try:
        return FsddTable(
            files=tuple(row["file"] for row in rows),
            digits=np.asarray([int(row["digit"]) for row in rows], dtype=np.int64),
            speakers=tuple(row["speaker"] for row in rows),
            seconds=np.asarray([int(row["n_samples"]) / int(row["sr"]) for row in rows]),
        )
    except (KeyError, ValueError, ZeroDivisionError) as exc:
        raise InvalidInput(f"{labels} has a malformed row: {exc}", code="invalid_labels") from exc


def is_test_image(index: np.ndarray | int) -> np.ndarray | bool:
    """Whether an MNIST test-set index is held out for the test split."""
    return np.asarray(index) % MNIST_TEST_MODULUS == MNIST_TEST_MODULUS - 1


def clip_tags(
    *,
    seen: Sequence[int],
    heard: Sequence[int],
    noise: str,
    tint: str,
    inverted: bool,
    moving: bool,
    blurred: bool,
) -> tuple[str, ...]:
    """The clip's tag set, in vocabulary order; the cross-modal tags follow from both lists."""
    names = {f"seen_{d}" for d in seen} | {f"heard_{d}" for d in heard}
    names |= {f"noise_{noise}", f"tint_{tint}"}
    flags = {
        "silent": not heard,
        "inverted": inverted,
        "moving": moving,
        "blurred": blurred,
        "match": bool(set(seen) & set(heard)),
        "same_count": len(heard) == len(seen),
        "heard_above_seen": bool(heard) and bool(seen) and max(heard) > max(seen),
    }
    names |= {name for name, on in flags.items() if on}
    return tuple(t for t in long_tail_vocab().tags if t in names)


def _zipf_weights(order: Sequence[int], exponent: float) -> np.ndarray:
    """``(10,)`` probabilities by digit: the digit at rank r gets ``(r + 1) ** -exponent``."""
    weights = np.empty(10)
    weights[list(order)] = np.arange(1, 11, dtype=np.float64) ** -exponent
    return weights / weights.sum()


def _draw_seen(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 3)`` distinct digits by Zipf weight (Gumbel top-k) and how many are used (1-3)."""
    keys = np.log(_zipf_weights(SEEN_ORDER, SEEN_ZIPF)) + rng.gumbel(size=(n, 10))
    digits = np.argsort(-keys, axis=1)[:, :3]
    counts = rng.choice(3, size=n, p=N_SEEN_P) + 1
    return digits, counts


def generate_specs(
    fsdd: FsddTable,
    mnist_labels: np.ndarray,
    *,
    n: int,
    split: str,
    seed: int,
    test_speaker: str = TEST_SPEAKER,
    first_index: int = 0,
) -> list[ClipSpec]:
    """``n`` clip specs of one split (``"pool"`` or ``"test"``), deterministic for a seed.

    Args:
        fsdd: the FSDD table (:func:`read_fsdd_table`).
        mnist_labels: int ``(10000,)`` labels of the MNIST test set.
        n: number of clips.
        split: ``"test"`` uses only ``test_speaker`` and held-out images; ``"pool"`` neither.
        seed: with ``split``, fixes every draw.
        test_speaker: the held-out FSDD speaker.
        first_index: ``index`` of the first spec (clip ids continue across splits).
    """
    if split not in ("pool", "test") or n < 0:
        raise InvalidInput(f"need split pool|test and n >= 0, got {split!r}, {n}", code="bad_split")
    speakers = sorted(set(fsdd.speakers))
    if test_speaker not in speakers:
        raise InvalidInput(f"unknown test speaker {test_speaker!r}", code="unknown_speaker")
    rng = np.random.default_rng([seed, 0 if split == "pool" else 1])
    voices = [test_speaker] if split == "test" else [s for s in speakers if s != test_speaker]
    held_out = is_test_image(np.arange(len(mnist_labels)))
    keep_images = held_out if split == "test" else ~held_out
    images_of = [np.flatnonzero(keep_images & (mnist_labels == d)) for d in range(10)]
    # (speaker, digit) -> recordings sorted by length, so "fits in the time left" is a prefix.
    by_voice: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    for voice in voices:
        for d in range(10):
            rows = np.flatnonzero((np.asarray(fsdd.speakers) == voice) & (fsdd.digits == d))
            rows = rows[np.argsort(fsdd.seconds[rows], kind="stable")]
            by_voice[voice, d] = (rows, fsdd.seconds[rows])

    seen_digits, n_seen = _draw_seen(rng, n)
    n_heard = rng.choice(3, size=n, p=N_HEARD_P)
    heard_prior = _zipf_weights(HEARD_ORDER, HEARD_ZIPF)
    zipf_heard = rng.choice(10, size=(n, 2), p=heard_prior)
    copy = rng.random((n, 2)) < COPY_SEEN
    copy_pick = rng.integers(0, 3, size=(n, 2))
    noise = rng.choice(len(NOISES), size=n, p=NOISE_P)
    tint = rng.choice(len(TINTS), size=n, p=TINT_P)
    flags = rng.random((n, 3)) < (P_INVERTED, P_MOVING, P_BLURRED)
    angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
    snr = rng.uniform(*SNR_DB, size=n)
    render_seeds = rng.integers(0, 2**31, size=n)
    # Per-clip picks as uniforms drawn up front: the loop below only indexes (fast at 20k).
    image_u = rng.random((n, 3))
    cell_order = np.argsort(rng.random((n, 4)), axis=1)
    voice_pick = rng.integers(0, len(voices), size=n)
    onset = rng.uniform(*ONSET_S, size=n)
    recording_u = rng.random((n, 2))
    gap = rng.uniform(*GAP_S, size=(n, 2))

    specs = []
    for i in range(n):
        seen = tuple(int(d) for d in seen_digits[i, : n_seen[i]])
        images = tuple(
            int(images_of[d][int(u * len(images_of[d]))])
            for d, u in zip(seen, image_u[i], strict=False)
        )
        cells = tuple(int(c) for c in cell_order[i, : len(seen)])
        voice = voices[int(voice_pick[i])]
        heard: list[int] = []
        recordings: list[int] = []
        onsets: list[float] = []
        at = float(onset[i])
        for j in range(int(n_heard[i])):
            digit = seen[copy_pick[i, j] % len(seen)] if copy[i, j] else int(zipf_heard[i, j])
            rows, seconds = by_voice[voice, digit]
            fits = int(np.searchsorted(seconds, SPEECH_END_S - at, side="right"))
            if fits == 0:
                break  # no recording of this digit fits in the time left: one utterance fewer
            row = int(rows[int(recording_u[i, j] * fits)])
            heard.append(digit)
            recordings.append(row)
            onsets.append(round(at, 4))
            at += float(fsdd.seconds[row] + gap[i, j])
        moving = bool(flags[i, 1])
        shift = (
            (
                round(MAX_SHIFT_PX * math.cos(angle[i]), 3),
                round(MAX_SHIFT_PX * math.sin(angle[i]), 3),
            )
            if moving
            else (0.0, 0.0)
        )
        specs.append(
            ClipSpec(
                index=first_index + i,
                split=split,
                seen=seen,
                images=images,
                cells=cells,
                heard=tuple(heard),
                recordings=tuple(recordings),
                onsets_s=tuple(onsets),
                speaker=voice,
                noise=NOISES[noise[i]],
                snr_db=round(float(snr[i]), 3),
                tint=TINTS[tint[i]],
                inverted=bool(flags[i, 0]),
                shift_px=shift,
                blurred=bool(flags[i, 2]),
                render_seed=int(render_seeds[i]),
                tags=clip_tags(
                    seen=seen,
                    heard=heard,
                    noise=NOISES[noise[i]],
                    tint=TINTS[tint[i]],
                    inverted=bool(flags[i, 0]),
                    moving=moving,
                    blurred=bool(flags[i, 2]),
                ),
            )
        )
    return specs


def generate_long_tail_specs(
    fsdd: FsddTable,
    mnist_labels: np.ndarray,
    *,
    seed: int = 0,
    n_pool: int = 20_000,
    n_test: int = 2_000,
    test_speaker: str = TEST_SPEAKER,
) -> list[ClipSpec]:
    """The pool (indices ``0 .. n_pool-1``) then the test split, each seeded on its own."""
    pool = generate_specs(
        fsdd, mnist_labels, n=n_pool, split="pool", seed=seed, test_speaker=test_speaker
    )
    test = generate_specs(
        fsdd,
        mnist_labels,
        n=n_test,
        split="test",
        seed=seed,
        test_speaker=test_speaker,
        first_index=n_pool,
    )
    return pool + test


def count_tags(specs: Sequence[ClipSpec]) -> dict[str, int]:
    """Tag -> number of clips carrying it, every vocabulary tag included, vocabulary order."""
    counts = Counter(t for spec in specs for t in spec.tags)
    return {t: counts.get(t, 0) for t in long_tail_vocab().tags}


def spec_targets(specs: Sequence[ClipSpec]) -> np.ndarray:
    """``(N, K)`` bool multi-hot over :func:`long_tail_vocab`; every group is decided."""
    index = long_tail_vocab().index
    out = np.zeros((len(specs), len(index)), dtype=bool)
    for row, spec in enumerate(specs):
        out[row, [index[t] for t in spec.tags]] = True
    return out
