"""The demo's random baseline: the side-by-side table and plot, and random_curve on a tiny set
(the simulation's own training code, a few seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tagloop.config import Settings
from tagloop.demo_baseline import format_side_by_side, plot_side_by_side, random_curve
from tagloop.errors import InvalidInput
from tagloop.fusion import FusionConfig
from tagloop.simulation_data import SimulationSet, load_demo_set

CONFIG = FusionConfig(
    frames_per_clip=2,
    frame_size=16,
    n_mels=32,
    visual_channels=(8, 16),
    audio_channels=(8, 16),
    hidden_dim=32,
)


@pytest.fixture(scope="module")
def demo() -> SimulationSet:
    return load_demo_set(n=60, seed=0, config=CONFIG, frames=2)


def tiny_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        train_epochs=2,
        train_patience=2,
        per_video_cap=1,
        audio_frames=None,
        torch_threads=1,  # tiny models: a second thread only adds synchronisation
    )


def test_random_curve_follows_the_label_counts(demo: SimulationSet, tmp_path: Path) -> None:
    settings = tiny_settings(tmp_path)
    curve = random_curve(demo, label_counts=[10, 20, 30], settings=settings)
    assert [n for n, _ in curve] == [10, 20, 30]
    assert all(0.0 <= acc <= 1.0 for _, acc in curve)
    # The seed fixes the seed batch, the random picks and the training: same curve again.
    assert random_curve(demo, label_counts=[10, 20, 30], settings=settings) == curve


@pytest.mark.parametrize("counts", [[], [0, 10], [10, 20, 35], [20, 10]])
def test_random_curve_refuses_uneven_label_counts(
    demo: SimulationSet, tmp_path: Path, counts: list[int]
) -> None:
    with pytest.raises(InvalidInput) as err:
        random_curve(demo, label_counts=counts, settings=tiny_settings(tmp_path))
    assert err.value.code == "bad_label_counts"


def test_table_aligns_both_curves_by_label_count() -> None:
    text = format_side_by_side(
        [(10, None), (20, 0.5), (30, 0.8)], [(10, 0.2), (20, 0.4), (30, 0.6), (40, 0.7)]
    )
    lines = text.splitlines()
    assert lines[0].split() == ["labels", "active", "learning", "random"]
    assert [line.split() for line in lines[1:5]] == [
        ["10", "-", "0.200"],
        ["20", "0.500", "0.400"],
        ["30", "0.800", "0.600"],
        ["40", "-", "0.700"],
    ]
    # The columns line up: every row as wide as the header.
    assert {len(line) for line in lines[:5]} == {len(lines[0])}
    # random's final 0.7 at 40 labels; active gets there between 20 (0.5) and 30 (0.8): 26.7.
    assert lines[-1] == (
        "active learning reached random's final accuracy 0.700 with 27 labels (67% of random's 40)"
    )


def test_table_says_when_active_learning_falls_short() -> None:
    text = format_side_by_side([(10, 0.3), (20, 0.5)], [(10, 0.4), (20, 0.6)])
    assert text.splitlines()[-1] == (
        "active learning did not reach random's final accuracy 0.600 (20 labels) within 20 labels"
    )


def test_table_without_any_active_accuracy_makes_no_claim() -> None:
    text = format_side_by_side([(10, None)], [(10, 0.4)])
    assert "reached" not in text and text.splitlines()[-1].startswith("no comparison")


def test_plot_draws_both_curves(tmp_path: Path) -> None:
    import matplotlib.colors
    import matplotlib.image

    path = plot_side_by_side(
        [(30, None), (60, 0.5), (90, 0.8)], [(30, 0.2), (60, 0.4), (90, 0.6)], tmp_path / "a/b.png"
    )
    assert path == tmp_path / "a/b.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)[..., :3]
    assert pixels.shape[:2] == (480, 720)  # 6x4 inches at 120 dpi
    # The default colour cycle: C0 for active learning, C1 for random; both must be drawn.
    for colour in ("C0", "C1"):
        rgb = np.asarray(matplotlib.colors.to_rgb(colour))
        assert (np.abs(pixels - rgb).max(axis=-1) < 0.05).sum() > 50, colour
