"""Rare tags through the real loop: an oracle labels a small long-tailed set
(``datasets.long_tail_*``) through the API and real workers with the default strategy: a seed
batch, then ``ROUNDS`` training rounds each followed by ``OFFERED`` labels from the queue.

What one run can show, and what it cannot. The run is repeatable on one machine (seeded specs,
one worker process, a seeded round, refills only on an empty queue), but not across machines:
the same commit and the same installed versions offered 13 rare clips in 80 on the machine the
team measured on and 6 on a fresh one, and on the fresh machine 6 became a pass (more than a
uniform draw's mean of 10.2) with nothing changed but the float kernels
(``ATEN_CPU_CAPABILITY=default`` or ``MKL_CBWR=COMPATIBLE``). A last-bit difference in one
round reorders the uncertain clips, and which 80 of 360 are offered follows. So one pool's
count is one draw from a distribution, and this test asserts only what holds for every draw of
a strategy that is not worse than random: the queue offers the strategy's ranking, never a
labeled clip, and no fewer rare clips than a uniform draw would offer with probability
``ALPHA`` (a one-sided test against random's exact, hypergeometric, distribution). That the
default offers *more* rare clips than random is a claim about the distribution over pools, and
``bench_al_lt_small`` measures it over 12 pools (``make bench``; on the fresh machine too the
default was ahead of random on 3 of 3 pools after two rounds, 11.0 rare clips against 8.7).

One stack kind, the embedded default (SQLite + the SQLAlchemy broker): the effect is the
selection's, not the database's. ``TAGLOOP_SELECTION_STRATEGY`` picks the strategy tested.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tagloop.auth import create_token
from tagloop.client import TagloopClient
from tagloop.datasets.long_tail_render import load_long_tail_sources, write_long_tail_videos
from tagloop.datasets.long_tail_spec import (
    ClipSpec,
    count_tags,
    generate_long_tail_specs,
    long_tail_vocab,
    read_fsdd_table,
)
from tagloop.datasets.mnist import read_idx_labels
from tagloop.db import loop_state
from tagloop.db import model_versions as version_repo
from tagloop.db.engine import session_scope
from tagloop.db.models import Job, QueueItem
from tagloop.pipeline.scoring import refill_queue
from tests.benchmarks.bench_al_lt_small import hypergeom_tail
from tests.integration.stack_helpers import running_stack, stack_settings, wait_until
from tests.integration.test_training_loop import wait_job

pytestmark = pytest.mark.integration

N_POOL = 400
SPEC_SEED = 0
RARE_FRACTION = 0.2  # the rarest fifth of the vocabulary's tags, by count in the pool
QUEUE_SIZE = 20
SEED_LABELS = 40  # labeled from the queue before the first round: two seed batches
OFFERED = 40  # clips read from the queue after each round: two ranked batches
# Fail when a uniform draw would offer this few rare clips or fewer with less than this chance.
ALPHA = 0.01
ROUNDS = 2  # training rounds, each followed by OFFERED labels from its ranking
NEXT = "/api/v1/queue/next"


@dataclass(frozen=True)
class LongTailSet:
    specs: list[ClipSpec]
    folder: Path  # holds videos/<index>.mp4


@pytest.fixture(scope="module")
def long_tail_set(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> LongTailSet:
    fsdd = read_fsdd_table(shared_data / "fsdd")
    mnist = read_idx_labels(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz")
    specs = generate_long_tail_specs(fsdd, mnist, seed=SPEC_SEED, n_pool=N_POOL, n_test=0)
    # Only the recordings these specs use: reading all 3,000 would take most of a minute.
    sources = load_long_tail_sources(shared_data, rows={r for s in specs for r in s.recordings})
    folder = tmp_path_factory.mktemp("long_tail")
    write_long_tail_videos(specs, sources, folder)
    return LongTailSet(specs=specs, folder=folder)


def rare_tags(specs: list[ClipSpec], *, fraction: float) -> set[str]:
    """The ``fraction`` of vocabulary tags fewest clips carry (ties by vocabulary order); tags
    no clip carries cannot be offered, so they do not count."""
    counts = [(n, t) for t, n in count_tags(specs).items() if n > 0]
    k = math.ceil(fraction * len(long_tail_vocab()))
    order = sorted(counts, key=lambda c: c[0])  # stable: vocabulary order among ties
    return {t for _, t in order[:k]}


def lease_next(client: TagloopClient, *, timeout_s: float = 120) -> dict[str, Any]:
    """The next offered clip; a 204 means a refill is on its way, so ask again."""
    got: list[dict[str, Any]] = []

    def offered() -> bool:
        r = client.request("GET", NEXT)
        if r.status_code == 200:
            got.append(r.json())
        return bool(got)

    wait_until(offered, timeout_s=timeout_s, poll_s=0.3, what="a clip from the queue")
    return got[0]


def label_from_queue(
    client: TagloopClient, truth: dict[int, ClipSpec], n: int
) -> list[tuple[dict[str, Any], ClipSpec]]:
    """Lease ``n`` clips one after another and label each with its spec's tags (the oracle)."""
    out = []
    for _ in range(n):
        item = lease_next(client)
        spec = truth[int(item["clip"]["video_id"])]
        r = client.request(
            "POST",
            f"/api/v1/clips/{item['clip']['id']}/labels",
            json={"tags": list(spec.tags), "lease_id": item["lease_id"], "seconds_spent": 1.0},
        )
        assert r.status_code == 201
        out.append((item, spec))
    return out


def loop_jobs_live(database_url: str) -> bool:
    with session_scope(database_url) as s:
        live = s.query(Job.id).filter(
            Job.kind.in_((loop_state.REFILL_JOB, loop_state.SCORE_JOB)),
            Job.status.in_(("queued", "running")),
        )
        return live.first() is not None


def queue_strategies(database_url: str) -> set[str]:
    with session_scope(database_url) as s:
        rows = s.query(QueueItem.strategy).filter(QueueItem.status == "queued")
        return {str(r) for (r,) in rows}


def ranked_by_promoted(database_url: str, strategy: str) -> bool:
    """The promoted version has scored every unlabeled clip, no refill or scoring is pending,
    and the queue holds clips ranked by ``strategy``."""
    with session_scope(database_url) as s:
        promoted = version_repo.promoted_version(s)
        if promoted is None or loop_state.has_unscored(s, version_id=promoted.id):
            return False
    return not loop_jobs_live(database_url) and queue_strategies(database_url) == {strategy}


@dataclass(frozen=True)
class QueueRun:
    strategy: str
    seeded: list[ClipSpec]  # the seed batch's clips, in labeling order
    offered: list[tuple[dict[str, Any], ClipSpec]]  # queue items after the rounds, in order
    seconds: dict[str, float]


def run_queue(tmp_path: Path, long_tail_set: LongTailSet) -> QueueRun:
    """Ingest the set, label the seed batch, then ``ROUNDS`` rounds of ``OFFERED`` labels with
    the settings' strategy."""
    settings = stack_settings(
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'data' / 'tagloop.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'data' / 'broker.sqlite'}",
        clip_seconds=2.0,  # every 1.5 s video is one clip
        torch_threads=1,
        queue_size=QUEUE_SIZE,
        # A refill only once the queue is empty (and never held back as too recent), so each
        # batch is built on a state that does not depend on timing: the run is deterministic.
        queue_low_water=0,
        refill_min_interval_seconds=0.0,
    )
    chosen = settings.selection_strategy
    started = time.monotonic()
    with running_stack(settings, ["api", "worker"]) as (_, admin):
        vocab = long_tail_vocab()
        for name, group in zip(vocab.tags, vocab.groups, strict=True):
            admin.request("POST", "/api/v1/tags", json={"name": name, "group": group})
        truth: dict[int, ClipSpec] = {}
        for spec in long_tail_set.specs:
            video = admin.upload_video(long_tail_set.folder / "videos" / f"{spec.index:06d}.mp4")
            truth[int(video["id"])] = spec
        videos = admin.wait_for_videos(list(truth), timeout_s=900)
        assert {v["status"] for v in videos} == {"ready"}
        # Refills during ingestion built the seed batch on whatever part of the pool was
        # ready then; once they are done, build it again on the whole pool, as the loop
        # worker would, so which clips are seeded does not depend on timing.
        wait_until(lambda: not loop_jobs_live(settings.database_url), timeout_s=60, what="refills")
        refill_queue(settings=settings)
        ingested = time.monotonic()

        with session_scope(settings.database_url) as s:
            token = create_token(s, name="oracle", role="annotator")
        with TagloopClient(settings.api_url, token) as oracle:
            seeded = label_from_queue(oracle, truth, SEED_LABELS)
            offered = []
            for _ in range(ROUNDS):
                job = admin.request("POST", "/api/v1/models/train").json()
                assert wait_job(admin, job["job_id"])["status"] == "succeeded"
                # A promotion scores the unlabeled clips and refills the queue with its ranking
                # (a rejected round leaves the promoted version's ranking in place).
                wait_until(
                    lambda: ranked_by_promoted(settings.database_url, chosen),
                    timeout_s=180,
                    what=f"the queue ranked by {chosen} with the promoted version",
                )
                offered += label_from_queue(oracle, truth, OFFERED)
    done = time.monotonic()
    assert {item["reason"]["strategy"] for item, _ in offered} == {chosen}
    labeled = {spec.index for _, spec in seeded}
    assert not {spec.index for _, spec in offered} & labeled  # never a labeled clip again
    return QueueRun(
        strategy=chosen,
        seeded=[spec for _, spec in seeded],
        offered=offered,
        seconds={"ingest": ingested - started, "labeling": done - ingested},
    )


def uniform_at_least(*, population: int, successes: int, draws: int, observed: int) -> float:
    """P(a uniform draw of ``draws`` from ``population`` holds >= ``observed`` successes)."""
    return sum(
        hypergeom_pmf(population=population, successes=successes, draws=draws, k=k)
        for k in range(observed, min(successes, draws) + 1)
    )


def uniform_at_most(*, population: int, successes: int, draws: int, observed: int) -> float:
    """P(a uniform draw of ``draws`` from ``population`` holds <= ``observed`` successes)."""
    return sum(
        hypergeom_pmf(population=population, successes=successes, draws=draws, k=k)
        for k in range(0, observed + 1)
    )


def hypergeom_pmf(*, population: int, successes: int, draws: int, k: int) -> float:
    return (
        math.comb(successes, k)
        * math.comb(population - successes, draws - k)
        / math.comb(population, draws)
    )


def test_uniform_tails_are_the_hypergeometric_distribution() -> None:
    """The bound the test below uses, checked on a case small enough to count by hand: 2 rare
    in 5, draw 2: P(0) = 3/10, P(1) = 6/10, P(2) = 1/10."""
    assert math.isclose(uniform_at_most(population=5, successes=2, draws=2, observed=0), 0.3)
    assert math.isclose(uniform_at_least(population=5, successes=2, draws=2, observed=2), 0.1)
    total = uniform_at_most(population=360, successes=46, draws=80, observed=80)
    assert math.isclose(total, 1.0)


def test_the_queue_offers_the_strategys_ranking_and_no_fewer_rare_tags_than_random(
    tmp_path: Path, long_tail_set: LongTailSet
) -> None:
    ours = run_queue(tmp_path, long_tail_set)
    assert ours.strategy != "random", "set TAGLOOP_SELECTION_STRATEGY to a ranked strategy"

    specs = long_tail_set.specs
    rare = rare_tags(specs, fraction=RARE_FRACTION)
    labeled = {s.index for s in ours.seeded}
    unlabeled = [s for s in specs if s.index not in labeled]
    rare_pool = sum(1 for s in unlabeled if rare & set(s.tags))
    found = sum(1 for _, s in ours.offered if rare & set(s.tags))
    draws = len(ours.offered)
    mean, q95 = hypergeom_tail(population=len(unlabeled), successes=rare_pool, draws=draws, q=0.95)
    low = uniform_at_most(
        population=len(unlabeled), successes=rare_pool, draws=draws, observed=found
    )
    report = (
        f"strategy={ours.strategy} rare={sorted(rare)} unlabeled={len(unlabeled)} "
        f"rare_unlabeled={rare_pool} offered={draws} rare_offered={found} "
        f"uniform_mean={mean:.2f} uniform_q95={q95} p_uniform_at_most={low:.4f} "
        f"ratio={found / mean:.2f} seconds={ours.seconds}"
    )
    print(report)
    assert rare_pool >= 5, report  # enough rare clips left for the comparison to mean much
    assert draws == ROUNDS * OFFERED, report
    # Worse than random beyond chance: the ranking would be steering away from rare tags.
    assert low >= ALPHA, report
