"""The loop's decision rule (pipeline.loop.decide): every trigger of train, score and refill,
and what must not trigger them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tagloop.pipeline.loop import LoopActions, LoopPolicy, LoopState, decide, queue_low, train_due

POLICY = LoopPolicy(low_water=5, min_labels=10, retrain_every_s=60.0, refill_min_interval_s=2.0)
# A healthy, idle service: a model, a full queue, nothing new.
IDLE = LoopState(
    promoted=True,
    queued=20,
    offerable_unqueued=True,
    unscored=False,
    new_labels=0,
    seconds_since_round=600.0,
    training_active=False,
    scoring_active=False,
    refill_active=False,
    seconds_since_refill=600.0,
)


def test_an_idle_healthy_service_does_nothing() -> None:
    assert decide(IDLE, POLICY) == LoopActions()


def test_enough_new_labels_start_a_round() -> None:
    assert decide(replace(IDLE, new_labels=10), POLICY) == LoopActions(train=True)
    assert decide(replace(IDLE, new_labels=9), POLICY) == LoopActions()


@pytest.mark.parametrize(
    "change",
    [
        {"training_active": True},  # one round at a time
        {"seconds_since_round": 30.0},  # at most one scheduled round per retrain_every
        {"new_labels": 0},  # never a round without new labels, whatever min_labels says
    ],
)
def test_rounds_that_must_not_start(change: dict[str, object]) -> None:
    state = replace(replace(IDLE, new_labels=10), **change)  # type: ignore[arg-type]
    assert not decide(state, POLICY).train


def test_zero_min_labels_still_needs_one_new_label() -> None:
    policy = replace(POLICY, min_labels=0)
    assert not train_due(replace(IDLE, new_labels=0), policy)
    assert train_due(replace(IDLE, new_labels=1), policy)


def test_the_first_round_ever_has_no_spacing_to_wait_for() -> None:
    state = replace(IDLE, promoted=False, new_labels=10, seconds_since_round=None)
    assert decide(state, POLICY).train


def test_a_low_queue_with_offerable_clips_is_refilled() -> None:
    low = replace(IDLE, queued=4)
    assert queue_low(low, POLICY)
    assert decide(low, POLICY) == LoopActions(refill=True)
    # Nothing left to offer: a refill could not help, so none runs.
    assert decide(replace(low, offerable_unqueued=False), POLICY) == LoopActions()


def test_an_empty_queue_before_any_model_gets_the_seed_batch() -> None:
    state = replace(IDLE, promoted=False, queued=0, seconds_since_refill=None)
    assert decide(state, POLICY) == LoopActions(refill=True)


def test_refills_are_not_stacked() -> None:
    low = replace(IDLE, queued=0)
    assert not decide(replace(low, refill_active=True), POLICY).refill
    assert not decide(replace(low, seconds_since_refill=1.0), POLICY).refill
    assert decide(replace(low, seconds_since_refill=2.5), POLICY).refill


def test_unscored_clips_are_scored_and_the_score_job_refills() -> None:
    state = replace(IDLE, unscored=True, queued=0)
    # Scoring ends with a refill, so the tick does not ask for a second one.
    assert decide(state, POLICY) == LoopActions(score=True)
    assert decide(replace(state, scoring_active=True), POLICY) == LoopActions(refill=True)
    # No model: nothing to score with.
    assert not decide(replace(state, promoted=False), POLICY).score


def test_train_score_and_refill_can_all_be_due_at_once() -> None:
    state = replace(IDLE, new_labels=50, unscored=True, queued=0)
    assert decide(state, POLICY) == LoopActions(train=True, score=True)


def test_pretraining_waits_for_the_pool_to_grow_by_a_fraction_of_the_last_run() -> None:
    from tagloop.pipeline.loop import pretrain_due

    policy = replace(POLICY, pretrain_after_new_clips=1000, pretrain_growth=0.5)
    first = replace(IDLE, new_clips_since_pretrain=1000)  # no run yet: the count alone
    assert pretrain_due(first, policy)
    assert not pretrain_due(replace(first, new_clips_since_pretrain=999), policy)
    # The last run saw 10,000 clips: 1,000 new are not enough, 5,000 are.
    grown = replace(IDLE, clips_at_last_pretrain=10_000)
    assert not pretrain_due(replace(grown, new_clips_since_pretrain=4999), policy)
    assert pretrain_due(replace(grown, new_clips_since_pretrain=5000), policy)
    assert decide(replace(grown, new_clips_since_pretrain=5000), policy).pretrain
    # Growth 0 is the count alone; the count 0 is "only on request" whatever the growth.
    assert pretrain_due(
        replace(grown, new_clips_since_pretrain=1000), replace(policy, pretrain_growth=0.0)
    )
    assert not pretrain_due(
        replace(grown, new_clips_since_pretrain=10**6), replace(policy, pretrain_after_new_clips=0)
    )
    assert not pretrain_due(replace(first, pretrain_active=True), policy)
