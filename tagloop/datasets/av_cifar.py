"""AV-CIFAR: a real photograph drifting over a frame, with a spoken number heard in most clips.

Made unlike the AV digits on purpose (issue 19): what is seen is a CIFAR-10 photograph
(10 object classes, colour, real texture) moving across a coloured 64x64 frame for one second;
what is heard is, in about 70% of clips, an FSDD speaker saying a digit somewhere in that second,
in white noise; the other clips hold the noise alone. Two exclusive tag groups: ``object`` (the
photograph's class, always labeled) and ``number`` (the spoken digit; no tag of the group when
nobody speaks). The two are independent, so neither modality helps the other group: a model
must learn each from its own modality.

Plan, then render: :func:`plan_av_cifar` decides every clip from a seed (cheap, what the unit
tests check); :func:`render_av_cifar` draws one clip's frames and audio; ``av_clip.write_av_clip``
makes it a real mp4. One FSDD speaker is held out as the test split; test and pool never share a
photograph or a recording.

Data: ``cifar10/train_subset.npz`` (Krizhevsky 2009) and ``fsdd/`` (Jakobovski et al.,
CC BY-SA 4.0) under the shared data folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagloop.datasets.av_clip import (
    AVClip,
    coloured_noise,
    drift_offsets,
    place_in_noise,
)
from tagloop.datasets.fsdd import read_wav
from tagloop.datasets.long_tail_spec import FsddTable, read_fsdd_table
from tagloop.errors import InvalidInput, NotFound
from tagloop.vocabulary import TagVocabulary

OBJECT_GROUP = "object"
NUMBER_GROUP = "number"
CIFAR_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
FRAME_SIZE = 64
PHOTO_SIZE = 32
FPS = 10
DURATION_S = 1.0
SAMPLE_RATE = 8000  # FSDD's rate; the writer resamples to the service's 16 kHz
TEST_SPEAKER = "george"
# Silence margin: a recording must fit in the clip with this much to spare.
_MARGIN_S = 0.05
_NOISE_RMS = 0.02
_PIXEL_NOISE = 6.0  # std of per-frame Gaussian pixel noise, in 0-255 units


def av_cifar_vocab() -> TagVocabulary:
    """``object_<class>`` (10, group ``object``) then ``number_<d>`` (10, group ``number``)."""
    pairs = [(f"object_{name}", OBJECT_GROUP) for name in CIFAR_CLASSES]
    pairs += [(f"number_{d}", NUMBER_GROUP) for d in range(10)]
    return TagVocabulary.from_pairs(pairs)


@dataclass(frozen=True)
class AVCifarSpec:
    """One clip, fully decided; rendering adds only ``render_seed``'s noise.

    image/label: row of the CIFAR subset and its class; recording/digit/speaker: row of the FSDD
    table, its digit and speaker (None for a noise-only clip); start/end: the photograph's
    top-left corner at the first and last frame; background: RGB 0-255; onset_s: where the
    speech starts.
    """

    image: int
    label: int
    recording: int | None
    digit: int | None
    speaker: str | None
    split: str
    start: tuple[int, int]
    end: tuple[int, int]
    background: tuple[int, int, int]
    onset_s: float
    render_seed: int

    @property
    def tags(self) -> tuple[str, ...]:
        obj = f"object_{CIFAR_CLASSES[self.label]}"
        return (obj,) if self.digit is None else (obj, f"number_{self.digit}")


@dataclass(frozen=True)
class AVCifarSources:
    """images uint8 ``(N, 32, 32, 3)``, labels int64 ``(N,)``, the FSDD table and folder."""

    images: np.ndarray
    labels: np.ndarray
    fsdd: FsddTable
    fsdd_dir: Path


def load_av_cifar_sources(data_dir: Path) -> AVCifarSources:
    """The CIFAR-10 subset and the FSDD table under ``data_dir`` (the shared data folder)."""
    npz = data_dir / "cifar10" / "train_subset.npz"
    if not npz.is_file():
        raise NotFound(f"CIFAR-10 subset {npz} does not exist", code="dataset_missing")
    with np.load(npz) as payload:
        images = np.asarray(payload["images"], dtype=np.uint8)
        labels = np.asarray(payload["labels"], dtype=np.int64)
    if images.shape[1:] != (PHOTO_SIZE, PHOTO_SIZE, 3) or len(images) != len(labels):
        raise InvalidInput(f"{npz}: unexpected shapes {images.shape}", code="invalid_dataset")
    return AVCifarSources(
        images=images,
        labels=labels,
        fsdd=read_fsdd_table(data_dir / "fsdd"),
        fsdd_dir=data_dir / "fsdd",
    )


def _cycled(pool: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` items of ``pool`` repeated as often as needed."""
    if pool.size == 0:
        raise InvalidInput("an empty pool to draw from", code="invalid_dataset_options")
    return pool[np.arange(count) % pool.size]


def plan_av_cifar(
    *,
    labels: np.ndarray,
    fsdd: FsddTable,
    n_pool: int,
    n_test: int,
    seed: int,
    test_speaker: str = TEST_SPEAKER,
    speech_fraction: float = 0.7,
    test_image_fraction: float = 0.2,
) -> list[AVCifarSpec]:
    """Every clip of the set: ``n_pool`` pool clips (split ``"train"``) then ``n_test`` test.

    Objects are balanced over the 10 classes, spoken digits over 0-9; exactly
    ``round(speech_fraction * n)`` clips of each split hold speech. Test clips use the
    ``test_image_fraction`` of each class's photographs the pool never sees, and the held-out
    speaker's recordings; pool clips the other speakers'. Deterministic for a seed.
    """
    if n_pool < 1 or n_test < 1 or not 0.0 <= speech_fraction <= 1.0:
        raise InvalidInput(
            f"need n_pool, n_test >= 1 and 0 <= speech_fraction <= 1; got {n_pool}, {n_test}, "
            f"{speech_fraction}",
            code="invalid_dataset_options",
        )
    if test_speaker not in set(fsdd.speakers):
        raise InvalidInput(f"unknown test speaker {test_speaker!r}", code="unknown_speaker")
    rng = np.random.default_rng(seed)
    speakers = np.asarray(fsdd.speakers)
    fits = fsdd.seconds <= DURATION_S - _MARGIN_S
    images: dict[str, dict[int, np.ndarray]] = {"train": {}, "test": {}}
    for label in range(10):
        rows = rng.permutation(np.flatnonzero(labels == label))
        cut = max(1, round(rows.size * test_image_fraction))
        images["test"][label], images["train"][label] = rows[:cut], rows[cut:]

    specs: list[AVCifarSpec] = []
    for split, count in (("train", n_pool), ("test", n_test)):
        objects = _cycled(rng.permutation(10), count)
        objects = rng.permutation(objects)
        n_speech = round(speech_fraction * count)
        has_speech = rng.permutation(np.arange(count) < n_speech)
        digits = rng.permutation(_cycled(rng.permutation(10), n_speech))
        of_split = (speakers == test_speaker) if split == "test" else (speakers != test_speaker)
        recordings = {
            d: rng.permutation(np.flatnonzero(of_split & fits & (fsdd.digits == d)))
            for d in range(10)
        }
        used_images = dict.fromkeys(range(10), 0)
        used_recordings = dict.fromkeys(range(10), 0)
        speech_index = 0
        for i in range(count):
            label = int(objects[i])
            pool = images[split][label]
            image = int(pool[used_images[label] % pool.size])
            used_images[label] += 1
            recording = digit = speaker = None
            onset = 0.0
            if has_speech[i]:
                digit = int(digits[speech_index])
                speech_index += 1
                options = recordings[digit]
                if options.size == 0:
                    raise InvalidInput(
                        f"no recording of {digit} fits the clip for split {split}",
                        code="invalid_dataset_options",
                    )
                recording = int(options[used_recordings[digit] % options.size])
                used_recordings[digit] += 1
                speaker = str(speakers[recording])
                room = DURATION_S - _MARGIN_S - float(fsdd.seconds[recording])
                onset = float(rng.uniform(0.0, max(room, 0.0)))
            span = FRAME_SIZE - PHOTO_SIZE
            specs.append(
                AVCifarSpec(
                    image=image,
                    label=label,
                    recording=recording,
                    digit=digit,
                    speaker=speaker,
                    split=split,
                    start=(int(rng.integers(0, span + 1)), int(rng.integers(0, span + 1))),
                    end=(int(rng.integers(0, span + 1)), int(rng.integers(0, span + 1))),
                    background=tuple(int(v) for v in rng.integers(40, 216, size=3)),  # type: ignore[arg-type]
                    onset_s=onset,
                    render_seed=int(rng.integers(0, 2**31 - 1)),
                )
            )
    return specs


def render_av_cifar(spec: AVCifarSpec, sources: AVCifarSources, *, snr_db: float = 10.0) -> AVClip:
    """The clip: ``FPS * DURATION_S`` frames ``(10, 64, 64, 3)`` and 1 s of 8 kHz audio
    (speech at ``snr_db`` over white noise, or the noise alone)."""
    rng = np.random.default_rng(spec.render_seed)
    n_frames = round(FPS * DURATION_S)
    photo = sources.images[spec.image].astype(np.float32)
    background = np.asarray(spec.background, dtype=np.float32)
    frames = np.empty((n_frames, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    for t, (row, col) in enumerate(
        drift_offsets(n_frames=n_frames, start=spec.start, end=spec.end)
    ):
        frame = np.broadcast_to(background, (FRAME_SIZE, FRAME_SIZE, 3)).copy()
        frame[row : row + PHOTO_SIZE, col : col + PHOTO_SIZE] = photo
        frame += rng.normal(0.0, _PIXEL_NOISE, size=frame.shape).astype(np.float32)
        frames[t] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)

    n_samples = round(SAMPLE_RATE * DURATION_S)
    speech = None
    if spec.recording is not None:
        speech, rate = read_wav(sources.fsdd_dir / sources.fsdd.files[spec.recording])
        if rate != SAMPLE_RATE:
            raise InvalidInput(f"FSDD rate {rate} != {SAMPLE_RATE}", code="invalid_dataset")
    audio = place_in_noise(
        speech,
        n_samples=n_samples,
        onset=round(spec.onset_s * SAMPLE_RATE),
        snr_db=snr_db,
        noise=coloured_noise(n_samples, exponent=0.0, rng=rng),
        level=_NOISE_RMS,
    )
    return AVClip(
        frames=frames,
        audio=audio,
        sample_rate=SAMPLE_RATE,
        fps=FPS,
        tags=spec.tags,
        speaker=spec.speaker,
        split=spec.split,
    )
