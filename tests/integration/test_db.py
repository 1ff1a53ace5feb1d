"""Migrations and repositories on both SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from tagloop.auth import Identity, TokenCache, authenticate, create_token, revoke_token
from tagloop.db import jobs as job_repo
from tagloop.db.engine import get_engine, session_scope
from tagloop.db.migrate import downgrade_database, upgrade_database
from tagloop.db.models import Base, Clip, Video, utcnow
from tagloop.errors import InvalidInput


def test_migrations_match_models_and_roundtrip(db_url: str) -> None:
    upgrade_database(db_url)
    engine = get_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    tables = set(inspect(engine).get_table_names())
    assert {
        "video",
        "clip",
        "tag",
        "label",
        "model_version",
        "prediction",
        "queue_item",
        "job",
        "api_token",
    } <= tables
    downgrade_database(db_url, revision="base")
    assert "video" not in set(inspect(engine).get_table_names())
    upgrade_database(db_url)
    assert "video" in set(inspect(engine).get_table_names())


def test_clip_index_unique_per_video(db_url: str) -> None:
    upgrade_database(db_url)
    with session_scope(db_url) as s:
        v = Video(sha256="a" * 64, filename="f.mp4", blob_uri="videos/x")
        s.add(v)
        s.flush()
        s.add(Clip(video_id=v.id, index=0, start_s=0, end_s=1))
        vid = v.id
    with pytest.raises(IntegrityError), session_scope(db_url) as s:
        s.add(Clip(video_id=vid, index=0, start_s=0, end_s=1))


def test_tokens_hashed_roles_and_revocation(db_url: str) -> None:
    upgrade_database(db_url)
    with session_scope(db_url) as s:
        token = create_token(s, name="ann", role="annotator")
    with session_scope(db_url) as s:
        row = authenticate(s, token)
        assert row is not None and row.role == "annotator" and row.name == "ann"
        assert row.token_hash != token and token not in row.token_hash
        assert authenticate(s, token + "x") is None
        with pytest.raises(InvalidInput):
            create_token(s, name="x", role="root")
        revoke_token(s, name="ann")
    with session_scope(db_url) as s:
        assert authenticate(s, token) is None


def test_token_cache_remembers_valid_tokens_for_its_ttl(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade_database(db_url)
    with session_scope(db_url) as s:
        token = create_token(s, name="ann", role="annotator")
    clock = [1000.0]
    monkeypatch.setattr("tagloop.auth.time.monotonic", lambda: clock[0])
    cache, uncached = TokenCache(5.0), TokenCache(0.0)
    with session_scope(db_url) as s:
        assert cache.lookup(s, token) == Identity(name="ann", role="annotator")
        assert uncached.lookup(s, token) == Identity(name="ann", role="annotator")
        assert cache.lookup(s, token + "x") is None
        revoke_token(s, name="ann")
    with session_scope(db_url) as s:
        clock[0] += 4.0
        # Revoked in the database, still remembered here: the documented revocation delay.
        assert cache.lookup(s, token) == Identity(name="ann", role="annotator")
        assert uncached.lookup(s, token) is None
        clock[0] += 1.5
        assert cache.lookup(s, token) is None  # past the TTL it is looked up again


def test_stale_jobs_found_by_heartbeat(db_url: str) -> None:
    upgrade_database(db_url)
    with session_scope(db_url) as s:
        job = job_repo.create_job(s, kind="process_video", params={"video_id": 1})
        job_repo.start_job(s, job, celery_task_id="t1")
        fresh = job_repo.create_job(s, kind="process_video", params={"video_id": 2})
        job_repo.start_job(s, fresh, celery_task_id="t2")
        job_id = job.id
    with session_scope(db_url) as s:
        later = utcnow() + timedelta(seconds=100)
        assert [
            j.id for j in job_repo.find_stale_jobs(s, older_than=timedelta(seconds=50), now=later)
        ] == [job_id, job_id + 1]
        assert job_repo.find_stale_jobs(s, older_than=timedelta(seconds=500), now=later) == []
        assert job_repo.active_job_for(s, kind="process_video", key="video_id", value=2) is not None


def test_migration_0004_keys_tags_and_keeps_legacy_case_duplicates(db_url: str) -> None:
    """Tags that differ only in case were allowed before 0004: the upgrade keeps them all
    (labels name them), each reachable by its own name, and refuses new ones of that name."""
    from sqlalchemy import text

    from tagloop.db import labels as label_repo
    from tagloop.db import tags as tag_repo
    from tagloop.db.models import Tag
    from tagloop.errors import Conflict

    upgrade_database(db_url, revision="0003")
    with get_engine(db_url).begin() as conn:
        for name in ["dog", "Dog", "hot  dog", "Straße"]:
            conn.execute(
                text("INSERT INTO tag (name, description, created_at) VALUES (:n, '', :t)"),
                {"n": name, "t": utcnow()},
            )
    upgrade_database(db_url)
    with session_scope(db_url) as s:
        keys = {t.name: t.name_key for t in s.query(Tag).order_by(Tag.id)}
        dup_id = s.query(Tag.id).filter(Tag.name == "Dog").scalar()
        assert keys == {
            "dog": "dog",
            "Dog": f"dog#{dup_id}",
            "hot  dog": "hot dog",
            "Straße": "strasse",
        }
        assert label_repo.validate_tag_set(s, ["Dog", "DOG", "Hot Dog", "STRASSE"]) == [
            "Dog",
            "dog",
            "hot  dog",
            "Straße",
        ]
        with pytest.raises(Conflict):
            tag_repo.create_tag(s, name="DOG")
    downgrade_database(db_url, revision="0003")
    assert "name_key" not in {c["name"] for c in inspect(get_engine(db_url)).get_columns("tag")}


def test_migration_0006_keeps_one_label_per_annotator_and_clip(db_url: str) -> None:
    """Before 0006 an annotator could hold several labels on a clip and seconds_spent could
    be infinite: the newest label of each (clip, annotator) stays, the older ones move to
    label_history, infinite times become NULL, and a second row is refused from then on."""
    from sqlalchemy import select, text

    from tagloop.db.models import Label, LabelHistory

    upgrade_database(db_url, revision="0005")
    with session_scope(db_url) as s:
        video = Video(sha256="a" * 64, filename="a.mp4", blob_uri="videos/a")
        s.add(video)
        s.flush()
        clip = Clip(video_id=video.id, index=0, start_s=0, end_s=1)
        s.add(clip)
        s.flush()
        clip_id = clip.id
    rows = [("ann", '["one"]', 1.0), ("ann", '["two"]', float("inf")), ("bob", '["one"]', 2.0)]
    with get_engine(db_url).begin() as conn:
        for who, tags, seconds in [*rows, ("ann", '["three"]', float("inf"))]:
            conn.execute(
                text(
                    "INSERT INTO label (clip_id, annotator, tags, seconds_spent, created_at) "
                    "VALUES (:c, :a, :t, :s, :ts)"
                ),
                {"c": clip_id, "a": who, "t": tags, "s": seconds, "ts": utcnow()},
            )
    upgrade_database(db_url)
    with session_scope(db_url) as s:
        kept = [(lb.annotator, lb.tags, lb.seconds_spent) for lb in s.scalars(select(Label))]
        assert sorted(kept) == [("ann", ["three"], None), ("bob", ["one"], 2.0)]
        old = [(h.annotator, h.tags, h.seconds_spent) for h in s.scalars(select(LabelHistory))]
        assert sorted(old, key=str) == [("ann", ["one"], 1.0), ("ann", ["two"], None)]
    with pytest.raises(IntegrityError), session_scope(db_url) as s:
        s.add(Label(clip_id=clip_id, annotator="bob", tags=["two"]))
        s.flush()
    downgrade_database(db_url, revision="0005")
    assert "label_history" not in inspect(get_engine(db_url)).get_table_names()


def test_token_names_pass_the_annotator_check(db_url: str) -> None:
    """A token's name is the annotator of its labels: no control characters, 128 at most."""
    upgrade_database(db_url)
    with session_scope(db_url) as s:
        for name in ["a\x00b", "\x1b[31mred", "n" * 129]:
            with pytest.raises(InvalidInput) as err:
                create_token(s, name=name, role="annotator")
            assert err.value.code == "invalid_name"
        assert create_token(s, name="n" * 128, role="annotator").startswith("tl_")
