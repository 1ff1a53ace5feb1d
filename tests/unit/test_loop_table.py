"""The loop's table (the docstring of ``tagloop.pipeline.loop``) is its specification: it renders
with docutils without a warning, and every row holds: its entry point, called on a real SQLite
database in the state a case describes, returns the plan the row names. A row without a case,
a case without a row, an ``on_*`` function the table does not list, or a plan naming an action
its row does not, fails here."""

from __future__ import annotations

import io
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from docutils import nodes
from docutils.core import publish_doctree
from sqlalchemy import select

from tagloop.config import Settings
from tagloop.db import jobs as job_repo
from tagloop.db.engine import get_engine, session_scope
from tagloop.db.loop_state import PRETRAIN_JOB, REFILL_JOB, SCORE_JOB, TRAIN_JOB
from tagloop.db.migrate import upgrade_database
from tagloop.db.models import Clip, Job, Label, ModelVersion, QueueItem, Video
from tagloop.errors import Conflict
from tagloop.pipeline import loop
from tagloop.task_names import PRETRAIN, REFILL_QUEUE, SCORE, TRAIN

# The word a row's plan uses for each task, and the job each task runs.
ACTION_WORDS = {TRAIN: "train", SCORE: "score", REFILL_QUEUE: "refill", PRETRAIN: "pretrain"}
JOB_KINDS = {TRAIN: TRAIN_JOB, SCORE: SCORE_JOB, REFILL_QUEUE: REFILL_JOB, PRETRAIN: PRETRAIN_JOB}
HEADER = ["event", "entry point", "plan"]


@dataclass(frozen=True)
class Row:
    event: str
    entry: str
    plan: str


def render(doc: str) -> tuple[nodes.document, str]:
    """The doctree and every message docutils reported (info and up) while parsing."""
    messages = io.StringIO()
    tree = publish_doctree(
        doc,
        settings_overrides={"warning_stream": messages, "report_level": 1, "halt_level": 5},
    )
    return tree, messages.getvalue()


def table_rows(doc: str) -> list[list[str]]:
    tree, _ = render(doc)
    [table] = list(tree.findall(nodes.table))
    return [
        [" ".join(entry.astext().split()) for entry in row.findall(nodes.entry)]
        for row in table.findall(nodes.row)
    ]


ROWS = {r[0]: Row(*r) for r in table_rows(loop.__doc__ or "")[1:]}


def test_the_table_renders_without_a_message() -> None:
    tree, messages = render(loop.__doc__ or "")
    assert messages == ""
    assert not list(tree.findall(nodes.system_message))
    rows = table_rows(loop.__doc__ or "")
    assert rows[0] == HEADER
    assert all(len(row) == 3 and all(row) for row in rows), rows
    assert len(ROWS) == len(rows) - 1, "two rows name the same event"


def test_the_parser_sees_a_broken_table() -> None:
    """What the old table did: a cell running past its column is an error, not a quiet row."""
    broken = """
==========  ======
event       plan
==========  ======
beat tick, every tick   refill
==========  ======
"""
    _, messages = render(broken)
    assert "Malformed table" in messages


def test_every_entry_point_is_a_row_and_every_row_an_entry_point() -> None:
    public = {
        name for name in dir(loop) if name.startswith("on_") and callable(getattr(loop, name))
    }
    assert {row.entry for row in ROWS.values()} == public


# --- The database each case starts from -------------------------------------------------------


@dataclass
class World:
    """A migrated SQLite database and settings with small, round numbers."""

    settings: Settings
    _video: int | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return self.settings.database_url

    def clips(self, n: int, *, audio: bool = False) -> list[int]:
        """Ready pool clips with tensors: offerable until queued, labeled or leased."""
        with session_scope(self.url) as s:
            video = Video(sha256=uuid.uuid4().hex * 2, filename="v.mp4", blob_uri="v")
            s.add(video)
            s.flush()
            rows = [
                Clip(
                    video_id=video.id,
                    index=i,
                    start_s=i,
                    end_s=i + 1,
                    tensor_uri="t",
                    has_audio=audio,
                )
                for i in range(n)
            ]
            s.add_all(rows)
            s.flush()
            return [c.id for c in rows]

    def queue(self, clip_ids: list[int]) -> None:
        with session_scope(self.url) as s:
            for rank, clip_id in enumerate(clip_ids):
                s.add(QueueItem(clip_id=clip_id, strategy="seed", score=0.0, rank=rank))

    def label(self, clip_ids: list[int]) -> None:
        with session_scope(self.url) as s:
            s.add_all(Label(clip_id=c, annotator="ana", tags=["dog"]) for c in clip_ids)

    def promote(self) -> None:
        with session_scope(self.url) as s:
            s.add(ModelVersion(status="promoted", artifact_uri="models/x.pt", vocabulary=[]))

    def live(self, kind: str) -> None:
        """A queued job of ``kind`` with a fresh heartbeat: the loop's lock for its kind."""
        with session_scope(self.url) as s:
            job_repo.create_job(s, kind=kind, params={"trigger": "earlier"})

    # The states the table's conditions read.
    def low(self) -> None:
        """Nothing queued, offerable clips waiting."""
        self.clips(3)

    def healthy(self) -> None:
        """``queue_low_water`` (2) rows queued, and an offerable clip beside them."""
        ids = self.clips(3)
        self.queue(ids[:2])

    def all_queued(self) -> None:
        """Two rows queued and no offerable clip left out of the queue."""
        self.queue(self.clips(2))


@dataclass(frozen=True)
class Case:
    state: str
    setup: Callable[[World], None]
    tasks: tuple[str, ...] = ()  # the plan's task names, in order
    trigger: str | None = None  # the trigger its jobs record (the score job records none)
    kwargs: dict[str, Any] = field(default_factory=dict)
    refused: str | None = None  # a Conflict's code instead of a plan
    settings: dict[str, Any] = field(default_factory=dict)


def both(*steps: Callable[[World], None]) -> Callable[[World], None]:
    def run(w: World) -> None:
        for step in steps:
            step(w)

    return run


def refill_if_low(trigger: str) -> list[Case]:
    return [
        Case("the queue is low", World.low, (REFILL_QUEUE,), trigger),
        Case("the queue is healthy", World.healthy),
        Case("low, a refill already live", both(World.low, lambda w: w.live(REFILL_JOB))),
    ]


def score_or_refill(trigger: str) -> list[Case]:
    return [
        Case("a model is promoted", both(World.healthy, World.promote), (SCORE,)),
        Case(
            "a model is promoted, a score job is live",
            both(World.low, World.promote, lambda w: w.live(SCORE_JOB)),
        ),
        Case("before any model, the queue low", World.low, (REFILL_QUEUE,), trigger),
        Case("before any model, the queue healthy", World.healthy),
    ]


def due_round(w: World) -> None:
    """Two labels on pool clips (``retrain_min_labels``) and no round yet; nothing offerable."""
    w.label(w.clips(2))


CASES: dict[str, list[Case]] = {
    "label saved (API)": refill_if_low("label"),
    "clip skipped (API)": refill_if_low("skip"),
    "queue/next found nothing (API)": [
        Case(
            "the queue is healthy, an offerable clip left out",
            World.healthy,
            (REFILL_QUEUE,),
            "queue_empty",
        ),
        Case("every offerable clip is queued", World.all_queued),
    ],
    "clips moved into the holdout (API)": refill_if_low("holdout"),
    "parked clip reviewed (API)": refill_if_low("review"),
    "clips ready (media worker)": score_or_refill("new_clips"),
    "promote or roll back (API)": score_or_refill("promote")[:2],
    "round finished, promoted": [
        Case(c.state, c.setup, c.tasks, c.trigger, {"promoted": True})
        for c in score_or_refill("promoted")[:2]
    ],
    "round finished, not promoted": [
        Case(c.state, c.setup, c.tasks, c.trigger, {"promoted": False})
        for c in refill_if_low("round_rejected")
    ],
    "pretraining run finished": [
        Case("no model, the queue healthy", World.healthy, (REFILL_QUEUE,), "pretrained"),
        Case("a model is promoted", both(World.low, World.promote)),
        Case("no model, a refill live", both(World.low, lambda w: w.live(REFILL_JOB))),
    ],
    "score finished (score worker)": [
        Case(
            "the queue healthy, another refill live",
            both(World.healthy, lambda w: w.live(REFILL_JOB)),
            (REFILL_QUEUE,),
            "scored",
        ),
    ],
    "beat tick (loop_tick_seconds)": [
        Case("a round is due", due_round, (TRAIN,), "tick"),
        Case("a round is due, one is running", both(due_round, lambda w: w.live(TRAIN_JOB))),
        Case("unscored clips, the queue low", both(World.low, World.promote), (SCORE,)),
        Case("before any model, the queue low", World.low, (REFILL_QUEUE,), "tick"),
        Case(
            "two new clips with sound",
            lambda w: w.queue(w.clips(2, audio=True)),
            (PRETRAIN,),
            "tick",
            settings={"pretrain_after_new_clips": 2, "pretrain_growth": 0.0},
        ),
        Case("nothing due", World.all_queued),
    ],
    "admin asks for a round (API)": [
        Case("no round is live", due_round, (TRAIN,), "manual"),
        Case("a round is live", lambda w: w.live(TRAIN_JOB), refused="training_running"),
    ],
    "admin asks for pretraining (API)": [
        Case("no run is live", World.healthy, (PRETRAIN,), "manual"),
        Case("a run is live", lambda w: w.live(PRETRAIN_JOB), refused="pretrain_running"),
    ],
}


def test_every_row_has_its_cases_and_every_case_its_row() -> None:
    assert set(CASES) == set(ROWS)


@pytest.mark.parametrize("event", sorted(ROWS))
def test_a_row_names_exactly_the_actions_its_cases_plan(event: str) -> None:
    """The plan a row names: every action word in its plan cell is one some state leads to,
    and no state leads to an action the cell does not name."""
    named = {
        task for task, word in ACTION_WORDS.items() if re.search(rf"\b{word}\b", ROWS[event].plan)
    }
    planned = {task for case in CASES.get(event, []) for task in case.tasks}
    assert planned == named, ROWS[event].plan


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One migrated database; each case starts from a copy of it."""
    path = tmp_path_factory.mktemp("loop_table") / "template.db"
    url = f"sqlite:///{path}"
    upgrade_database(url)
    get_engine(url).dispose()
    yield path


def world(template: Path, tmp_path: Path, **overrides: Any) -> World:
    path = tmp_path / "tagloop.db"
    with sqlite3.connect(template) as src, sqlite3.connect(path) as dst:
        src.backup(dst)
    values: dict[str, Any] = {
        "queue_size": 4,
        "queue_low_water": 2,
        "refill_min_interval_seconds": 0.0,
        "retrain_min_labels": 2,
        "retrain_every_minutes": 0.0,
        "pretrain_after_new_clips": 0,
        "skip_cooldown_seconds": 0.0,
        **overrides,
    }
    settings = Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{path}", **values)
    return World(settings)


CASE_IDS = [(event, case) for event, cases in CASES.items() for case in cases]


@pytest.mark.parametrize(("event", "case"), CASE_IDS, ids=[f"{e} / {c.state}" for e, c in CASE_IDS])
def test_event_in_plan_out(template: Path, tmp_path: Path, event: str, case: Case) -> None:
    w = world(template, tmp_path, **case.settings)
    case.setup(w)
    entry = getattr(loop, ROWS[event].entry)
    with session_scope(w.url) as s:
        if case.refused is not None:
            with pytest.raises(Conflict) as refused:
                entry(s, settings=w.settings, **case.kwargs)
            assert refused.value.code == case.refused
            return
        plan = entry(s, settings=w.settings, **case.kwargs)
        assert isinstance(plan, loop.LoopPlan)
    assert tuple(name for name, _ in plan.tasks) == case.tasks
    # Each task's job is a committed row of the task's kind, queued, with the event's trigger.
    with session_scope(w.url) as s:
        for name, job_id in plan.tasks:
            job = s.get(Job, job_id)
            assert job is not None and job.kind == JOB_KINDS[name] and job.status == "queued"
            assert (job.params or {}).get("trigger") == case.trigger
        # and the event created no other job (a case's earlier jobs say ``earlier``).
        planned = [job_id for _, job_id in plan.tasks]
        others = s.scalars(select(Job).where(Job.id.not_in(planned)))
        assert {(j.params or {}).get("trigger") for j in others} <= {"earlier"}
