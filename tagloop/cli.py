"""The `tagloop` command line: up, demo, db, token, ingest, import-tags, simulate, sweep."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from tagloop.config import (
    PRIVATE_FILE_MODE,
    Settings,
    ensure_data_dir,
    get_settings,
    make_files_private,
)
from tagloop.db.engine import session_scope
from tagloop.errors import TagloopError

app = typer.Typer(help="tagloop: tag short videos with active learning.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")


@app.callback()
def _main() -> None:
    """tagloop: tag short videos with active learning."""
    # Every file this command and its children (the `up` stack) create is private: the data
    # dir holds the database, the blobs and tokens (README "Configuration").
    make_files_private()


def _fail(exc: TagloopError) -> None:
    typer.secho(f"error [{exc.code}]: {exc.message}", fg="red", err=True)
    raise typer.Exit(code=1)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations to the configured database (TAGLOOP_DATABASE_URL)."""
    from tagloop.db.migrate import upgrade_database

    settings = get_settings()
    upgrade_database(settings.database_url, revision=revision)
    typer.echo(f"database at {revision}: {settings.database_url}")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="who uses the token; labels carry this name")],
    role: Annotated[str, typer.Option(help="admin or annotator")] = "annotator",
) -> None:
    """Print a new API token (shown once; only its hash is stored)."""
    from tagloop.auth import create_token

    try:
        with session_scope(get_settings().database_url) as session:
            token = create_token(session, name=name, role=role)
    except TagloopError as exc:
        _fail(exc)
    typer.echo(token)


@token_app.command("revoke")
def token_revoke(name: Annotated[str, typer.Option()]) -> None:
    from tagloop.auth import revoke_token

    try:
        with session_scope(get_settings().database_url) as session:
            n = revoke_token(session, name=name)
    except TagloopError as exc:
        _fail(exc)
    typer.echo(f"revoked {n} token(s) named {name}")


def ensure_admin_token(settings: Settings) -> str:
    """The first admin token, written once to <data dir>/admin.token (mode 600)."""
    from tagloop.auth import authenticate, create_token

    path = settings.admin_token_path
    if path.exists():
        token = path.read_text().strip()
        with session_scope(settings.database_url) as session:
            if authenticate(session, token) is not None:
                return token
    with session_scope(settings.database_url) as session:
        token = create_token(session, name="admin", role="admin")
    ensure_data_dir(settings)
    # Created 0600 (never readable by others, not even for a moment), then written.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), PRIVATE_FILE_MODE)  # an older, looser file keeps its mode
        f.write(token + "\n")
    return token


def _stop_children_on_sigterm() -> None:
    # SIGTERM would otherwise end this process without its `finally`, orphaning the children.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def prepare(settings: Settings) -> str:
    from tagloop.db.migrate import upgrade_database

    ensure_data_dir(settings)
    upgrade_database(settings.database_url)
    _make_sqlite_private(settings.database_url)
    return ensure_admin_token(settings)


def _make_sqlite_private(database_url: str) -> None:
    """The SQLite files owner-only, even when this process's umask is not (tests, an older
    data dir); SQLite gives its -wal and -shm files the database file's mode."""
    if not database_url.startswith("sqlite:///"):
        return
    db = Path(database_url.removeprefix("sqlite:///").split("?", 1)[0])
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if path.exists() and path.stat().st_uid == os.getuid():
            path.chmod(PRIVATE_FILE_MODE)


@app.command()
def up(
    ui: Annotated[bool, typer.Option(help="also serve the Streamlit UI")] = True,
    concurrency: Annotated[int, typer.Option(help="worker processes")] = 1,
    single_user: Annotated[
        bool,
        typer.Option(
            help="the UI signs in with the local admin token; turn off when others can reach it"
        ),
    ] = True,
) -> None:
    """Run API, worker, beat and UI on this machine until Ctrl-C."""
    from tagloop.launcher import Stack, child_specs

    settings = get_settings().model_copy(update={"ui_single_user": single_user})
    prepare(settings)
    _stop_children_on_sigterm()
    components = ["api", "worker", "beat"] + (["ui"] if ui else [])
    stack = Stack(
        settings,
        child_specs(settings, components=components, worker_concurrency=concurrency),
        log_dir=settings.data_dir / "logs",
    )
    try:
        stack.wait_for_api()
        typer.echo(f"API      {settings.api_url}  (docs: {settings.api_url}/docs)")
        if ui:
            typer.echo(f"UI       http://{settings.api_host}:{settings.ui_port}")
        typer.echo(f"token    {settings.admin_token_path}")
        typer.echo(f"logs     {stack.log_dir}")
        typer.echo("Ctrl-C stops everything.")
        while not (dead := stack.dead()):
            time.sleep(1)
        typer.secho(f"{', '.join(dead)} exited; stopping (see {stack.log_dir})", fg="red", err=True)
        raise typer.Exit(code=1)
    except TagloopError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


def demo_settings(settings: Settings, *, batch: int) -> Settings:
    """The demo's loop settings: short clips, a fast schedule, a round per labeled batch."""
    return settings.model_copy(
        update={
            "clip_seconds": 2.0,
            "audio_frames": 128,
            "loop_tick_seconds": 2.0,
            "retrain_every_minutes": 0.05,
            "retrain_min_labels": batch,
            "queue_size": batch * 2,
            "queue_low_water": max(1, batch // 2),
            "per_video_cap": 1,
            "train_epochs": 20,
            "train_patience": 6,
        }
    )


@app.command()
def demo(
    n: Annotated[int, typer.Option(help="number of demo clips")] = 300,
    rounds: Annotated[int, typer.Option(help="labeling rounds, the seed round first")] = 7,
    batch: Annotated[int, typer.Option(help="labels per round")] = 30,
    seed: int = 0,
    timeout: Annotated[float, typer.Option(help="seconds to wait for each stage")] = 900,
) -> None:
    """Run the whole loop headless: build AV-digit clips, ingest them over REST, then label
    rounds by an oracle while the workers retrain, rescore and refill; print the curve."""
    from tagloop.client import TagloopClient
    from tagloop.demo import (
        build_demo_set,
        ensure_digit_tags,
        format_ingest_report,
        ingest_demo_set,
        label_holdout,
        run_rounds,
        write_curve,
    )
    from tagloop.launcher import Stack, child_specs

    settings = demo_settings(get_settings(), batch=batch)
    token = prepare(settings)
    _stop_children_on_sigterm()
    typer.echo(f"building {n} demo clips (scikit-learn digits + DTMF tones)...")
    labels = build_demo_set(settings.data_dir / "demo-set", n=n, seed=seed)
    stack = Stack(
        settings,
        child_specs(settings, components=["api", "worker", "beat"]),
        log_dir=settings.data_dir / "logs",
    )
    try:
        stack.wait_for_api()
        typer.echo(f"stack up: API {settings.api_url}, worker and beat (logs in {stack.log_dir})")
        with TagloopClient(settings.api_url, token) as client:
            summary, pool = ingest_demo_set(client, labels, timeout_s=timeout, echo=typer.echo)
            typer.echo(format_ingest_report(summary))
            if summary["statuses"].get("ready", 0) == 0:
                raise typer.Exit(code=1)
            ensure_digit_tags(client)
            n_holdout = label_holdout(client, pool, timeout_s=timeout)
            typer.echo(
                f"\nholdout: {n_holdout} clips labeled through their own queue; they measure "
                "every version and never train one"
            )
            typer.echo(f"active learning: {rounds} rounds of {batch} labels by an oracle")
            curve = run_rounds(
                client, pool, rounds=rounds, batch=batch, round_timeout_s=timeout, echo=typer.echo
            )
        csv_path, png_path = write_curve(
            curve, settings.data_dir, strategy=settings.selection_strategy
        )
        typer.echo(f"\nlearning curve: {png_path} and {csv_path}")
        _compare_with_random(settings, pool, curve)
        typer.echo(f"make up serves the UI on http://{settings.api_host}:{settings.ui_port}")
    except TagloopError as exc:
        _fail(exc)
    finally:
        stack.stop()


def _compare_with_random(settings: Settings, pool: Any, curve: list[dict[str, Any]]) -> None:
    """Random selection on the same clips with the same budget, beside the demo's curve."""
    from tagloop.demo_baseline import (
        format_side_by_side,
        load_demo_simulation_set,
        plot_side_by_side,
        random_curve,
    )

    typer.echo("\nrandom selection on the same clips and budget (offline, same training code)...")
    active = [(int(r["labels"]), r["test_accuracy"]) for r in curve]
    try:
        data = load_demo_simulation_set(
            settings=settings, truth=pool.truth, test_clips=pool.test_clips
        )
        random = random_curve(data, label_counts=[n for n, _ in active], settings=settings)
    except TagloopError as exc:
        typer.secho(f"no random comparison: {exc.code}: {exc}", fg="yellow", err=True)
        return
    typer.echo(format_side_by_side(active, random))
    png = plot_side_by_side(active, random, settings.data_dir / "demo_vs_random.png")
    typer.echo(f"side by side: {png}")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="video files to upload")],
    wait: Annotated[bool, typer.Option(help="wait until the workers are done")] = True,
    api_url: Annotated[str | None, typer.Option(help="default: TAGLOOP_API_URL")] = None,
    token: Annotated[str | None, typer.Option(help="default: the admin token file")] = None,
) -> None:
    """Upload video files to a running tagloop API."""
    from tagloop.client import TagloopClient

    settings = get_settings()
    token = token or settings.admin_token_path.read_text().strip()
    try:
        with TagloopClient(api_url or settings.api_url, token) as client:
            videos = [client.upload_video(p) for p in paths]
            for v in videos:
                typer.echo(
                    f"{v['id']:>6}  {v['status']:<10} "
                    f"{'duplicate ' if v['duplicate'] else ''}{v['filename']}"
                )
            if wait:
                for v in client.wait_for_videos([v["id"] for v in videos]):
                    err = f"  {v['error_code']}: {v['error_message']}" if v["error_code"] else ""
                    typer.echo(f"{v['id']:>6}  {v['status']:<10} {v['n_clips']} clips{err}")
    except TagloopError as exc:
        _fail(exc)


@app.command("import-tags")
def import_tags(
    path: Annotated[
        Path, typer.Argument(help="taxonomy: .csv or .json (name, group, parent, description)")
    ],
    api_url: Annotated[str | None, typer.Option(help="default: TAGLOOP_API_URL")] = None,
    token: Annotated[str | None, typer.Option(help="default: the admin token file")] = None,
) -> None:
    """Create or update a whole tag taxonomy in one request (all or nothing; importing the
    same file again changes nothing). Bad rows are listed and nothing is stored."""
    from tagloop.client import ApiError, TagloopClient

    settings = get_settings()
    token = token or settings.admin_token_path.read_text().strip()
    try:
        with TagloopClient(api_url or settings.api_url, token) as client:
            done = client.import_tags(path)
    except ApiError as exc:
        for e in exc.details.get("errors", []):
            typer.echo(f"row {e['row']:>6}  {e['code']:<24} {e['name']!r}: {e['message']}")
        _fail(exc)
    except TagloopError as exc:
        _fail(exc)
    else:
        typer.echo(
            f"{done['rows']} rows: {done['created']} created, {done['updated']} updated, "
            f"{done['unchanged']} unchanged"
        )


@app.command()
def simulate(
    dataset: Annotated[str, typer.Option(help="demo or fsdd-mnist")] = "demo",
    tensors: Annotated[
        Path | None, typer.Option(help="fsdd-mnist: the tensor cache (.pt) to read")
    ] = None,
    n: Annotated[int, typer.Option(help="demo: number of clips")] = 600,
    strategies: Annotated[
        str, typer.Option(help="comma list; random is always added")
    ] = "entropy,margin,bald",
    seed_size: Annotated[int, typer.Option(help="labels of the seed round")] = 50,
    batch_size: Annotated[int, typer.Option(help="labels per later round")] = 50,
    rounds: Annotated[int, typer.Option(help="rounds after the seed round")] = 8,
    seeds: Annotated[int, typer.Option(help="repeats with seeds 0..seeds-1")] = 3,
    epochs: Annotated[int, typer.Option(help="epochs per warm-started round")] = 4,
    seed_epochs: Annotated[int, typer.Option(help="epochs of the seed round")] = 30,
    min_steps: Annotated[int, typer.Option(help="optimiser steps per round, at least")] = 150,
    mc_passes: Annotated[int, typer.Option(help="MC-dropout passes (bald)")] = 4,
    frames: Annotated[int | None, typer.Option(help="keep this many frames per clip")] = 1,
    candidates: Annotated[
        int | None, typer.Option(help="score this many random unlabeled clips per round")
    ] = None,
    threads: Annotated[int, typer.Option(help="torch threads (1 on a busy machine)")] = 2,
    out: Annotated[Path, typer.Option(help="folder for the CSV, PNG and JSON")] = Path(
        "simulation"
    ),
) -> None:
    """Active learning with an oracle on a labeled set: every strategy's learning curve (the
    service's training, scoring and selection code) and the labels each needs to reach random
    sampling's final accuracy."""
    from tagloop.errors import InvalidInput
    from tagloop.simulation import SimulationOptions
    from tagloop.simulation import run_simulation as run_sim
    from tagloop.simulation_data import load_demo_set, load_tensor_set
    from tagloop.simulation_report import (
        format_summary,
        plot_curves,
        summarize_savings,
        write_curves_csv,
        write_summary,
    )

    try:
        options = SimulationOptions(
            strategies=tuple(s.strip() for s in strategies.split(",") if s.strip()),
            seed_size=seed_size,
            batch_size=batch_size,
            rounds=rounds,
            seeds=seeds,
            epochs=epochs,
            seed_epochs=seed_epochs,
            min_steps=min_steps,
            mc_passes=mc_passes,
            candidates=candidates,
            num_threads=threads,
        )
        if dataset == "demo":
            data = load_demo_set(n=n, frames=frames)
        elif dataset == "fsdd-mnist":
            if tensors is None:
                raise InvalidInput(
                    "fsdd-mnist needs --tensors "
                    "(build it: python -m tests.benchmarks.av_digits_tensors)",
                    code="missing_tensors",
                )
            data = load_tensor_set(tensors, frames=frames)
        else:
            raise InvalidInput(f"unknown dataset {dataset!r}", code="unknown_dataset")
        typer.echo(f"{data.name}: pool {len(data.pool)} clips, test {len(data.test)} clips")
        records = run_sim(
            data,
            options=options,
            progress=lambda r: typer.echo(
                f"{r.strategy:<14} seed {r.seed} round {r.round}: {r.n_labels:>5} labels, "
                f"accuracy {r.accuracy:.3f} ({r.epochs_run} epochs, train {r.train_seconds:.1f} s,"
                f" select {r.select_seconds:.1f} s)"
            ),
        )
        summary = summarize_savings(records)
    except TagloopError as exc:
        _fail(exc)
    write_curves_csv(records, out / "al_curves.csv")
    plot_curves(records, out / "al_curves.png", title=f"active learning on {data.name}")
    write_summary(summary, csv_path=out / "al_summary.csv", json_path=out / "al_summary.json")
    typer.echo(format_summary(summary))
    typer.echo(f"curves: {out / 'al_curves.csv'}, {out / 'al_curves.png'}; table: {out}")


@app.command()
def sweep(
    dry_run: Annotated[bool, typer.Option(help="report the orphans, delete nothing")] = False,
    min_age_seconds: Annotated[
        float | None, typer.Option(help="default: TAGLOOP_BLOB_SWEEP_MIN_AGE_SECONDS")
    ] = None,
) -> None:
    """Remove blobs that no database row references (what beat runs every hour)."""
    from tagloop.pipeline.sweep import sweep_orphan_blobs

    settings = get_settings()
    age = settings.blob_sweep_min_age_seconds if min_age_seconds is None else min_age_seconds
    try:
        report = sweep_orphan_blobs(settings=settings, older_than_s=age, dry_run=dry_run)
    except TagloopError as exc:
        _fail(exc)
    typer.echo(report.describe())
    for key in report.sample:
        typer.echo(f"  {key}")
    if report.removed > len(report.sample):
        typer.echo(f"  ... and {report.removed - len(report.sample)} more")


if __name__ == "__main__":
    app()
