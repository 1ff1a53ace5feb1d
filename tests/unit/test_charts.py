"""The Dashboard's learning-curve table: one point per label count, integer counts."""

from __future__ import annotations

from ui.charts import curve_frame


def test_two_versions_at_one_label_count_give_one_point_the_newest() -> None:
    points = [
        {"version_id": 3, "n_labels": 15.0, "score": 0.6},
        {"version_id": 1, "n_labels": 5.0, "score": 0.2},
        {"version_id": 2, "n_labels": 15.0, "score": 0.5},  # a round on the same labels
    ]
    frame = curve_frame(points)
    assert frame["n_labels"].tolist() == [5, 15]
    assert frame["score"].tolist() == [0.2, 0.6]  # v3, the newer of the two at 15
    assert str(frame["n_labels"].dtype) == "int64"  # the axis reads 15, not 15.000000
