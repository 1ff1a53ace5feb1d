"""Co-training selection: which clips get pseudo-labels from which view, and their targets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagloop.errors import InvalidInput
from tagloop.training.cotrain import (
    CotrainOptions,
    PseudoLabel,
    build_pseudo_targets,
    select_pseudo_labels,
)
from tagloop.vocabulary import TagVocabulary

DIGITS = TagVocabulary.from_pairs([("0", "digit"), ("1", "digit"), ("2", "digit")])
MIXED = TagVocabulary.from_pairs(
    [("0", "digit"), ("1", "digit"), ("indoor", "scene"), ("outdoor", "scene"), ("music", None)]
)
OPTS = CotrainOptions(confident=0.9, unsure=0.6, max_per_round=100, max_per_class=100)


def _select(
    visual: list[list[float]],
    audio: list[list[float]],
    *,
    vocab: TagVocabulary = DIGITS,
    audio_present: list[bool] | None = None,
    ids: list[int] | None = None,
    options: CotrainOptions = OPTS,
) -> list[PseudoLabel]:
    n = len(visual)
    present = {} if audio_present is None else {"audio": np.asarray(audio_present, dtype=bool)}
    return select_pseudo_labels(
        {"visual": np.asarray(visual, np.float32), "audio": np.asarray(audio, np.float32)},
        present,
        np.asarray(ids if ids is not None else range(1, n + 1), dtype=np.int64),
        vocab=vocab,
        options=options,
    )


def test_confident_view_teaches_unsure_view_in_a_group() -> None:
    out = _select([[0.95, 0.03, 0.02]], [[0.4, 0.35, 0.25]])
    assert [(lb.clip_id, lb.tags, lb.negative_tags, lb.source) for lb in out] == [
        (1, ["0"], [], "visual")
    ]
    assert out[0].confidence == pytest.approx(0.95)
    out = _select([[0.4, 0.35, 0.25]], [[0.02, 0.03, 0.95]])
    assert [(lb.tags, lb.source) for lb in out] == [(["2"], "audio")]


def test_thresholds_are_inclusive_for_confident_and_strict_for_unsure() -> None:
    opts = CotrainOptions(confident=0.75, unsure=0.5, max_per_round=10, max_per_class=10)
    # 0.75 is confident (>=); 0.5 is not unsure (< is strict).
    assert _select([[0.75, 0.25, 0.0]], [[0.49, 0.26, 0.25]], options=opts)
    assert not _select([[0.75, 0.25, 0.0]], [[0.5, 0.25, 0.25]], options=opts)
    assert not _select([[0.74, 0.26, 0.0]], [[0.4, 0.3, 0.3]], options=opts)


def test_no_pseudo_label_when_both_confident_both_unsure_or_in_between() -> None:
    disagree = _select([[0.95, 0.03, 0.02]], [[0.02, 0.03, 0.95]])
    agree = _select([[0.95, 0.03, 0.02]], [[0.92, 0.05, 0.03]])
    both_unsure = _select([[0.5, 0.3, 0.2]], [[0.4, 0.35, 0.25]])
    between = _select([[0.95, 0.03, 0.02]], [[0.7, 0.2, 0.1]])  # audio neither sure nor unsure
    assert disagree == agree == both_unsure == between == []


def test_clip_without_audio_is_skipped() -> None:
    visual = [[0.95, 0.03, 0.02], [0.95, 0.03, 0.02]]
    audio = [[0.4, 0.35, 0.25], [0.4, 0.35, 0.25]]  # clip 1: the masked head's output
    out = _select(visual, audio, audio_present=[False, True])
    assert [lb.clip_id for lb in out] == [2]


def test_fewer_than_two_views_give_nothing() -> None:
    probs = np.asarray([[0.99, 0.005, 0.005]], np.float32)
    ids = np.asarray([1])
    assert select_pseudo_labels({}, {}, ids, vocab=DIGITS, options=OPTS) == []
    assert select_pseudo_labels({"visual": probs}, {}, ids, vocab=DIGITS, options=OPTS) == []


def test_ungrouped_tags_confident_yes_and_no() -> None:
    # Columns: 0, 1 (digit), indoor, outdoor (scene), music (ungrouped).
    visual = [
        [0.5, 0.5, 0.5, 0.5, 0.97],  # visual: music yes; audio unsure -> "music"
        [0.5, 0.5, 0.5, 0.5, 0.02],  # visual: music no; audio unsure -> not "music"
        [0.5, 0.5, 0.5, 0.5, 0.97],  # audio confident no: both sure, disagree -> nothing
        [0.5, 0.5, 0.5, 0.5, 0.7],  # visual in between -> nothing
    ]
    audio = [
        [0.5, 0.5, 0.5, 0.5, 0.5],
        [0.5, 0.5, 0.5, 0.5, 0.55],
        [0.5, 0.5, 0.5, 0.5, 0.05],
        [0.5, 0.5, 0.5, 0.5, 0.5],
    ]
    out = {lb.clip_id: lb for lb in _select(visual, audio, vocab=MIXED)}
    assert set(out) == {1, 2}
    assert out[1].tags == ["music"] and out[1].negative_tags == [] and out[1].source == "visual"
    assert out[2].tags == [] and out[2].negative_tags == ["music"]
    assert out[2].confidence == pytest.approx(0.98)


def test_groups_and_ungrouped_together_and_two_teachers_on_one_clip() -> None:
    # Visual is sure of the digit (audio unsure); audio is sure of the scene (visual unsure)
    # and that there is music (visual unsure): two pseudo-labels for one clip.
    visual = [[0.96, 0.04, 0.55, 0.45, 0.5]]
    audio = [[0.55, 0.45, 0.03, 0.97, 0.93]]
    out = _select(visual, audio, vocab=MIXED)
    by_source = {lb.source: lb for lb in out}
    assert by_source["visual"].tags == ["0"]
    assert by_source["audio"].tags == ["outdoor", "music"]
    assert by_source["audio"].confidence == pytest.approx(0.93)  # its weakest decision
    assert [lb.source for lb in out] == ["visual", "audio"]  # most confident first


def test_round_cap_keeps_the_most_confident_and_ties_go_to_lower_clip_ids() -> None:
    unsure = [0.4, 0.35, 0.25]
    visual = [[0.91, 0.05, 0.04], [0.99, 0.005, 0.005], [0.95, 0.03, 0.02], [0.95, 0.03, 0.02]]
    ids = [40, 10, 30, 20]
    opts = CotrainOptions(confident=0.9, unsure=0.6, max_per_round=2, max_per_class=10)
    out = _select(visual, [unsure] * 4, ids=ids, options=opts)
    assert [lb.clip_id for lb in out] == [10, 20]


def test_class_cap_as_count_and_as_share() -> None:
    unsure = [0.4, 0.35, 0.25]
    visual = [[0.99, 0.005, 0.005]] * 4 + [[0.005, 0.95, 0.045]] * 2
    count = CotrainOptions(confident=0.9, unsure=0.6, max_per_round=100, max_per_class=2)
    out = _select(visual, [unsure] * 6, options=count)
    assert sorted((lb.tags[0], lb.clip_id) for lb in out) == [
        ("0", 1),
        ("0", 2),
        ("1", 5),
        ("1", 6),
    ]
    share = CotrainOptions(confident=0.9, unsure=0.6, max_per_round=4, max_per_class=0.5)
    assert share.class_cap == 2
    out = _select(visual, [unsure] * 6, options=share)
    assert sorted(lb.tags[0] for lb in out) == ["0", "0", "1", "1"]


def test_selection_is_deterministic_under_row_order() -> None:
    rng = np.random.default_rng(0)
    n = 200
    visual = rng.dirichlet([0.3] * 3, size=n).astype(np.float32)
    audio = rng.dirichlet([0.3] * 3, size=n).astype(np.float32)
    ids = rng.permutation(np.arange(1000, 1000 + n))
    opts = CotrainOptions(confident=0.8, unsure=0.6, max_per_round=20, max_per_class=0.4)

    def run(perm: np.ndarray) -> list[PseudoLabel]:
        return select_pseudo_labels(
            {"visual": visual[perm], "audio": audio[perm]},
            {},
            ids[perm],
            vocab=DIGITS,
            options=opts,
        )

    first = run(np.arange(n))
    assert first and first == run(rng.permutation(n)) == run(np.arange(n)[::-1])
    assert len({lb.clip_id for lb in first}) <= 20


def test_options_are_validated() -> None:
    for bad in (
        {"confident": 0.5},
        {"confident": 1.1},
        {"confident": float("nan")},
        {"unsure": 0.95},
        {"unsure": 0.0},
        {"max_per_round": -1},
        {"max_per_round": 2.5},
        {"max_per_class": 0},
        {"max_per_class": 1.5},
        {"max_per_class": True},
    ):
        with pytest.raises(InvalidInput) as err:
            CotrainOptions(**bad)
        assert err.value.code == "bad_cotrain_options"


def test_inputs_are_validated() -> None:
    good = np.full((2, 3), 1 / 3, np.float32)
    for probs, present, ids in (
        ({"visual": good, "audio": good[:1]}, {}, [1, 2]),
        ({"visual": good, "audio": good}, {}, [1, 1]),
        ({"visual": good, "audio": good}, {"audio": np.ones(2, int)}, [1, 2]),
        ({"visual": good, "audio": good}, {}, [1.0, 2.0]),
    ):
        with pytest.raises(InvalidInput) as err:
            select_pseudo_labels(probs, present, np.asarray(ids), vocab=DIGITS, options=OPTS)
        assert err.value.code == "bad_cotrain_input"


def test_pseudo_targets_know_only_what_was_decided() -> None:
    labels = [
        PseudoLabel(clip_id=7, tags=["1"], source="visual", confidence=0.95),
        PseudoLabel(clip_id=9, tags=[], negative_tags=["music"], source="audio", confidence=0.9),
        PseudoLabel(clip_id=7, tags=["music", "nope"], source="audio", confidence=0.92),
    ]
    ids, targets, known = build_pseudo_targets(labels, vocab=MIXED)
    assert ids.tolist() == [7, 9]
    assert targets.tolist() == [[0, 1, 0, 0, 1], [0, 0, 0, 0, 0]]
    assert known.tolist() == [
        [True, True, False, False, True],
        [False, False, False, False, True],
    ]
    ids, targets, known = build_pseudo_targets([], vocab=MIXED)
    assert ids.shape == (0,) and targets.shape == known.shape == (0, 5)


def _probs(draw: st.DrawFn, n: int, vocab: TagVocabulary) -> np.ndarray:
    raw = np.asarray(
        draw(st.lists(st.floats(0.0, 1.0), min_size=n * len(vocab), max_size=n * len(vocab))),
        dtype=np.float64,
    ).reshape(n, len(vocab))
    out = raw.copy()
    for columns in vocab.group_indices.values():
        block = raw[:, columns] + 1e-6
        out[:, columns] = block / block.sum(axis=1, keepdims=True)
    return out.astype(np.float32)


@st.composite
def _case(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, CotrainOptions]:
    n = draw(st.integers(1, 8))
    confident = draw(st.floats(0.51, 1.0))
    unsure = draw(st.floats(0.01, confident))
    opts = CotrainOptions(
        confident=confident,
        unsure=unsure,
        max_per_round=draw(st.integers(0, 10)),
        max_per_class=draw(st.integers(1, 10)),
    )
    present = np.asarray(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    return _probs(draw, n, MIXED), _probs(draw, n, MIXED), present, opts


def _confidence(p: np.ndarray, vocab: TagVocabulary) -> dict[tuple[str, ...], np.ndarray]:
    """Per decision (a group, or an ungrouped tag) the view's confidence, ``(N,)``."""
    out: dict[tuple[str, ...], np.ndarray] = {
        (g,): p[:, ix].max(axis=1) for g, ix in vocab.group_indices.items()
    }
    for j in vocab.ungrouped_indices.tolist():
        out[(vocab.tags[j],)] = np.maximum(p[:, j], 1 - p[:, j])
    return out


@settings(max_examples=200, deadline=None)
@given(_case())
def test_property_a_pseudo_label_always_has_one_sure_teacher_and_an_unsure_pupil(
    case: tuple[np.ndarray, np.ndarray, np.ndarray, CotrainOptions],
) -> None:
    visual, audio, audio_present, opts = case
    ids = np.arange(1, visual.shape[0] + 1)
    out = select_pseudo_labels(
        {"visual": visual, "audio": audio},
        {"audio": audio_present},
        ids,
        vocab=MIXED,
        options=opts,
    )
    assert len({lb.clip_id for lb in out}) <= opts.max_per_round
    views = {"visual": _confidence(visual.astype(np.float64), MIXED)}
    views["audio"] = _confidence(audio.astype(np.float64), MIXED)
    group_of = dict(zip(MIXED.tags, MIXED.groups, strict=True))
    for lb in out:
        row = lb.clip_id - 1
        assert audio_present[row], "a clip without audio never gets a pseudo-label"
        pupil = "audio" if lb.source == "visual" else "visual"
        for name in [*lb.tags, *lb.negative_tags]:
            key = (group_of[name] or name,)
            teacher_conf = views[lb.source][key][row]
            pupil_conf = views[pupil][key][row]
            # Never where both views are unsure, never where both are sure.
            assert teacher_conf >= opts.confident
            assert pupil_conf < opts.unsure
        assert lb.confidence >= opts.confident
    counts: dict[tuple[str, bool], int] = {}
    for lb in out:
        for name in lb.tags:
            counts[(name, True)] = counts.get((name, True), 0) + 1
        for name in lb.negative_tags:
            counts[(name, False)] = counts.get((name, False), 0) + 1
    assert all(c <= opts.class_cap for c in counts.values())
