"""Telephone DTMF tones: the sound that names a digit and needs no download.

Each key of a telephone keypad is the sum of one low "row" tone and one high "column" tone
(ITU-T Q.23). Two digits in the same row share the low tone, two in the same column share the
high one; that structure is what the demo set's tone dropouts exploit (see ``av_digits``).
"""

from __future__ import annotations

import numpy as np

from tagloop.errors import InvalidInput

ROW_HZ: tuple[float, ...] = (697.0, 770.0, 852.0, 941.0)
COLUMN_HZ: tuple[float, ...] = (1209.0, 1336.0, 1477.0, 1633.0)

# (row, column) on the keypad: 1 2 3 / 4 5 6 / 7 8 9 / * 0 #.
_KEY_POSITION: dict[int, tuple[int, int]] = {
    1: (0, 0),
    2: (0, 1),
    3: (0, 2),
    4: (1, 0),
    5: (1, 1),
    6: (1, 2),
    7: (2, 0),
    8: (2, 1),
    9: (2, 2),
    0: (3, 1),
}

# Short raised-cosine ramps so the tone starts and stops without a broadband click.
_RAMP_S = 0.005


def get_dtmf_frequencies(digit: int) -> tuple[float, float]:
    """The (low, high) tone pair in Hz of ``digit`` (0-9), e.g. 5 -> (770, 1336)."""
    if digit not in _KEY_POSITION:
        raise InvalidInput(f"DTMF digit must be 0-9, got {digit!r}", code="invalid_digit")
    row, column = _KEY_POSITION[digit]
    return ROW_HZ[row], COLUMN_HZ[column]


def synthesize_dtmf(
    digit: int,
    *,
    sample_rate: int,
    duration_s: float,
    rng: np.random.Generator,
    pitch_jitter: float = 0.0,
    onset_jitter_s: float = 0.0,
    tone_gains: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """The DTMF tone pair of ``digit``, jittered in pitch and timing.

    Args:
        digit: 0-9.
        sample_rate: samples per second; must exceed twice the highest (jittered) tone.
        duration_s: length of the returned clip; the tone runs from its onset to the end.
        rng: the only source of randomness (deterministic for a seeded generator).
        pitch_jitter: each tone is scaled by ``1 + u``, ``u ~ U(-pitch_jitter, pitch_jitter)``
            independently, like a slightly detuned keypad.
        onset_jitter_s: silence before the tone, ``~ U(0, onset_jitter_s)``.
        tone_gains: (low, high) amplitude factors; 0 drops a tone.

    Returns:
        float32 ``(N,)`` with ``N = round(sample_rate * duration_s)``, peak at most 0.9.
    """
    if sample_rate <= 0 or duration_s <= 0:
        raise InvalidInput(
            f"sample_rate and duration_s must be positive, got {sample_rate}, {duration_s}",
            code="invalid_audio_shape",
        )
    if not 0.0 <= pitch_jitter < 0.5 or onset_jitter_s < 0:
        raise InvalidInput(
            f"pitch_jitter must be in [0, 0.5) and onset_jitter_s >= 0, got "
            f"{pitch_jitter}, {onset_jitter_s}",
            code="invalid_jitter",
        )
    low, high = get_dtmf_frequencies(digit)
    if high * (1.0 + pitch_jitter) >= sample_rate / 2:
        raise InvalidInput(
            f"sample_rate {sample_rate} Hz cannot carry a {high:.0f} Hz tone",
            code="sample_rate_too_low",
        )
    n = max(1, round(sample_rate * duration_s))
    onset = min(round(rng.uniform(0.0, onset_jitter_s) * sample_rate), n - 1)
    t = np.arange(n - onset, dtype=np.float64) / sample_rate

    tone = np.zeros(n - onset, dtype=np.float64)
    for base, gain in zip((low, high), tone_gains, strict=True):
        freq = base * (1.0 + rng.uniform(-pitch_jitter, pitch_jitter))
        phase = rng.uniform(0.0, 2.0 * np.pi)
        tone += 0.45 * gain * np.sin(2.0 * np.pi * freq * t + phase)

    ramp = min(round(_RAMP_S * sample_rate), (n - onset) // 2)
    if ramp > 0:
        window = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        tone[:ramp] *= window
        tone[-ramp:] *= window[::-1]

    out = np.zeros(n, dtype=np.float32)
    out[onset:] = tone
    return out
