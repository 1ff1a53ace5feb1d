"""Who is signed in, on every page, in headless Chromium against the API and the Streamlit UI.

An annotator signs in, walks every page in both orders and labels a clip: the sidebar must
name them on every page, no admin-only control may show, and the label must be theirs, with
no lease left open and seconds_spent counted only while the clip was on screen. Enter in the
focused tag box, with a dropdown option highlighted, must submit exactly the checked tags. An
admin sees the controls the annotator does not, and signs out to an empty sign-in form. The
local single-user flag (``tagloop up``) is the only way the admin token is ever used unasked.

Needs Debian's ``chromium`` (see tests/e2e/test_ui_browser.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from streamlit.testing.v1 import AppTest

from tagloop.auth import create_token
from tagloop.client import TagloopClient
from tagloop.config import Settings, get_settings
from tagloop.db.engine import session_scope
from tagloop.db.models import Clip, ModelVersion, QueueItem, utcnow
from tests.conftest import REPO, free_port
from tests.e2e.test_ui_apptest import TAGS, queue_clips
from tests.e2e.test_ui_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    _require_chromium,
    _ui_up,
    ingested_ui_settings,
)
from tests.integration.stack_helpers import running_stack, wait_until
from tests.integration.test_labels import add_clips

pytestmark = pytest.mark.e2e

PAGES = ["Label", "Dashboard", "Clips", "Models", "Tags", "Ingest"]
AWAY_S = 6.0  # seconds the annotator spends on the Dashboard while holding a lease
# A UI of its own for the closed-tab test: the shortest hold the API grants, a fast heartbeat.
HOLD_S = 10.0
BEAT_S = 2.0


@dataclass
class UiStack:
    settings: Settings
    admin: TagloopClient
    ui_url: str
    clips: list[int]
    ready_version: int  # newer than the promoted one: admins get "Promote" by default


@pytest.fixture(scope="module")
def ui_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiStack]:
    _require_chromium()
    settings, clips = ingested_ui_settings(tmp_path_factory.mktemp("roles"))
    assert len(clips) >= 3, clips
    with session_scope(settings.database_url) as s:
        ready = ModelVersion(
            status="ready",
            vocabulary=[{"name": n, "group": g} for n, g in TAGS],
            config={"kind": "centralnet"},
            metrics={"score": 0.8},
            n_train=12,
            artifact_uri="models/ready.pt",
        )
        s.add(ready)
        s.flush()
        ready_id = ready.id
        # A parked clip: admins get "Un-park" on the Clips page.
        s.execute(update(Clip).where(Clip.id == clips[-1]).values(needs_review=True))
    # API and UI only: no worker refills the queue under the tests.
    queue_clips(settings, [])
    with running_stack(settings, ["api", "ui"]) as (_, admin):
        ui_url = f"http://127.0.0.1:{settings.ui_port}"
        wait_until(lambda: _ui_up(ui_url), timeout_s=60, what="the Streamlit UI")
        yield UiStack(settings, admin, ui_url, clips, ready_id)


@pytest.fixture(scope="module")
def browser(ui_stack: UiStack) -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, ui_stack: UiStack) -> Iterator[Any]:
    """A fresh browser context per test: a new Streamlit session, nobody signed in."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    try:
        yield pg
    finally:
        context.close()


def new_token(settings: Settings, name: str, role: str = "annotator") -> str:
    with session_scope(settings.database_url) as s:
        return create_token(s, name=name, role=role)


def free_queue(settings: Settings) -> None:
    """No clip queued or leased: each test queues exactly what it names."""
    with session_scope(settings.database_url) as s:
        s.execute(delete(QueueItem).where(QueueItem.status.in_(("queued", "leased"))))


def settle(page: Any) -> None:
    """Wait until the script run in flight has finished (call after seeing its first output)."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')


def arrow_to(page: Any, box: Any, option_id: str) -> None:
    """Press ArrowDown until ``option_id`` is the highlighted option of the combobox ``box``.

    One press is not enough when it lands while the filtered list is still re-rendering
    after typing: the list then comes back with its first entry highlighted again.
    """
    from playwright.sync_api import expect

    for _ in range(20):
        active = box.get_attribute("aria-activedescendant")
        if active == option_id:
            break
        if active is None or active.endswith("__select_matches__"):
            page.keyboard.press("ArrowDown")
        page.wait_for_timeout(150)
    expect(box).to_have_attribute("aria-activedescendant", option_id)


def sign_in(page: Any, token: str) -> None:
    box = page.get_by_label("API token")
    box.fill(token)
    box.press("Enter")


def visit(page: Any, title: str) -> None:
    from playwright.sync_api import expect

    page.get_by_role("link", name=title).click()
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()
    settle(page)


def expect_signed_in(page: Any, name: str, role: str) -> None:
    from playwright.sync_api import expect

    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar).to_contain_text(f"Signed in as {name} · {role}")
    expect(sidebar.get_by_role("button", name="Sign out")).to_be_visible()


def admin_controls(page: Any, title: str) -> list[Any]:
    """Locators of the admin-only controls of a page (the AdminDep routes behind them)."""
    controls: dict[str, Callable[[], list[Any]]] = {
        "Label": lambda: [],
        "Dashboard": lambda: [  # POST /models/train, POST /holdout
            page.get_by_role("button", name="Retrain now"),
            page.get_by_text("Holdout sample (admin)"),
        ],
        "Clips": lambda: [page.get_by_role("button", name="Un-park")],  # POST /clips/{id}/review
        "Models": lambda: [  # POST /models/{id}/promote
            page.get_by_role("button", name="Promote v"),
            page.get_by_role("button", name="Roll back to v"),
        ],
        "Tags": lambda: [page.get_by_role("button", name="Create tag")],  # POST /tags
        "Ingest": lambda: [page.get_by_test_id("stFileUploader")],  # POST /videos
    }
    return controls[title]()


def expect_no_admin_controls(page: Any, title: str) -> None:
    from playwright.sync_api import expect

    for control in admin_controls(page, title):
        expect(control).to_have_count(0)


def labels_of(stack: UiStack, clip_id: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = stack.admin.request("GET", f"/api/v1/clips/{clip_id}").json()[
        "labels"
    ]
    return out


def leased(stack: UiStack) -> int:
    return int(stack.admin.request("GET", "/api/v1/stats").json()["counts"]["queue"]["leased"])


def test_annotator_keeps_their_identity_on_every_page(ui_stack: UiStack, page: Any) -> None:
    from playwright.sync_api import expect

    clip = ui_stack.clips[0]
    free_queue(ui_stack.settings)
    token = new_token(ui_stack.settings, "ana")
    page.goto(ui_stack.ui_url)
    # A visitor gets no token: the sign-in form, empty, and nobody signed in.
    expect(page.get_by_role("heading", name="Label", exact=True)).to_be_visible()
    expect(page.get_by_text("Enter a token")).to_be_visible()
    expect(page.get_by_label("API token")).to_have_value("")
    expect(page.get_by_test_id("stSidebar")).not_to_contain_text("Signed in as")

    sign_in(page, token)
    expect_signed_in(page, "ana", "annotator")
    expect(page.get_by_text("The queue is empty")).to_be_visible()
    # Streamlit's developer toolbar (Deploy, rerun, clear cache) is not offered.
    expect(page.get_by_role("button", name="Deploy")).to_have_count(0)
    queue_clips(ui_stack.settings, [clip])
    page.get_by_role("button", name="Check again").click()
    expect(page.get_by_text(f"clip {clip} · video")).to_be_visible()
    settle(page)
    shown_at = time.monotonic()
    assert leased(ui_stack) == 1

    # Label -> ... -> Ingest, then back: the same person, the same lease, on every page.
    for i, title in enumerate([*PAGES[1:], *reversed(PAGES[:-1])]):
        visit(page, title)
        expect_signed_in(page, "ana", "annotator")
        expect_no_admin_controls(page, title)
        if i == 0:
            time.sleep(AWAY_S)  # away from the clip: this must not count as labeling time
    expect(page.get_by_text(f"clip {clip} · video")).to_be_visible()
    back_at = time.monotonic()
    expect(page.get_by_role("button", name="☑ cat · 91%")).to_be_visible()
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("Enter")
    expect(page.get_by_text(f"Labeled clip {clip} as cat in")).to_be_visible()
    expect_signed_in(page, "ana", "annotator")

    (label,) = labels_of(ui_stack, clip)
    assert (label["tags"], label["annotator"]) == (["cat"], "ana")
    assert leased(ui_stack) == 0  # the annotator's lease was closed by their own label
    # Only the time the clip was on screen: the first look, then from the return to Enter.
    away = back_at - shown_at
    assert 0 < label["seconds_spent"] < away - AWAY_S / 2, (label["seconds_spent"], away)


def test_enter_in_the_tag_box_submits_exactly_the_checked_tags(
    ui_stack: UiStack, page: Any
) -> None:
    from playwright.sync_api import expect

    clip = ui_stack.clips[1]
    free_queue(ui_stack.settings)
    page.goto(ui_stack.ui_url)
    sign_in(page, new_token(ui_stack.settings, "kbd"))
    expect(page.get_by_text("The queue is empty")).to_be_visible()
    queue_clips(ui_stack.settings, [clip])
    page.get_by_role("button", name="Check again").click()
    expect(page.get_by_text(f"clip {clip} · video")).to_be_visible()
    expect(page.get_by_role("button", name="☑ cat · 91%")).to_be_visible()
    settle(page)

    # Typed "Do" in the tag box, arrow down to "dog": the highlighted option, which Enter
    # must not add (nor the "Select N matches" option highlighted before the arrow).
    box = page.locator('[data-testid="stMultiSelect"] input')
    box.click()
    page.keyboard.type("Do")
    option = page.get_by_role("option", name="dog", exact=True)
    expect(option).to_be_visible()
    arrow_to(page, box, str(option.get_attribute("id")))
    expect(box).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_text(f"Labeled clip {clip} as cat in")).to_be_visible()

    labels = labels_of(ui_stack, clip)
    assert [(lb["tags"], lb["annotator"]) for lb in labels] == [(["cat"], "kbd")]
    assert leased(ui_stack) == 0


def chips(page: Any) -> Any:
    """The tags checked in the tag box (its chips)."""
    return page.locator('[data-testid="stMultiSelect"] [data-tag] > span[title]')


def test_chosen_tags_survive_every_page_and_a_reload(ui_stack: UiStack, page: Any) -> None:
    """Issue 20 in a browser: uncheck the pre-checked cat, check dog and indoor, walk every
    page, come back, reload the browser (a new session: sign in again), submit. The label is
    exactly dog and indoor; signing out then hands the next clip back to the queue."""
    from playwright.sync_api import expect

    first, second = ui_stack.clips[:2]
    free_queue(ui_stack.settings)
    token = new_token(ui_stack.settings, "keep")
    page.goto(ui_stack.ui_url)
    sign_in(page, token)
    expect(page.get_by_text("The queue is empty")).to_be_visible()
    queue_clips(ui_stack.settings, [first, second])
    page.get_by_role("button", name="Check again").click()
    expect(page.get_by_text(f"clip {first} · video")).to_be_visible()
    expect(chips(page)).to_have_text(["cat"])
    settle(page)

    page.get_by_role("button", name="☑ cat · 91%").click()
    expect(page.get_by_role("button", name="☐ cat · 91%")).to_be_visible()
    settle(page)
    page.get_by_role("button", name="☐ dog · 22%").click()
    expect(page.get_by_role("button", name="☑ dog · 22%")).to_be_visible()
    settle(page)
    # A tag the model did not suggest: found by typing (the page never loads the vocabulary).
    page.get_by_role("textbox", name="Find a tag").fill("indoor")
    page.get_by_role("button", name="☐ indoor (scene)").click()
    expect(page.get_by_role("button", name="☑ indoor (scene)")).to_be_visible()
    chosen = ["dog", "indoor"]
    expect(chips(page)).to_have_text(chosen)
    settle(page)

    for title in [*PAGES[1:], "Label"]:
        visit(page, title)
    expect(page.get_by_text(f"clip {first} · video")).to_be_visible()
    expect(chips(page)).to_have_text(chosen)
    expect(page.get_by_role("button", name="☐ cat · 91%")).to_be_visible()

    page.reload()
    # A new session: nobody is signed in (wait for its form, not the old page's last frame).
    expect(page.get_by_text("Enter a token")).to_be_visible()
    settle(page)
    sign_in(page, token)
    expect_signed_in(page, "keep", "annotator")
    expect(page.get_by_text(f"clip {first} · video")).to_be_visible()
    expect(chips(page)).to_have_text(chosen)
    settle(page)
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text(f"Labeled clip {first} as dog, indoor in")).to_be_visible()
    # Exactly one label of this annotator (the other tests of the module label clip 1 too).
    (label,) = [lb for lb in labels_of(ui_stack, first) if lb["annotator"] == "keep"]
    assert sorted(label["tags"]) == chosen

    # The next clip is leased; signing out hands it back (no lease left open, no skip).
    expect(page.get_by_text(f"clip {second} · video")).to_be_visible()
    settle(page)
    assert leased(ui_stack) == 1
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("Enter a token")).to_be_visible()
    assert leased(ui_stack) == 0
    with session_scope(ui_stack.settings.database_url) as s:
        rows = s.scalars(select(QueueItem).where(QueueItem.clip_id == second)).all()
        # Released, not skipped: the lease ended early (the other tests of the module left
        # rows of their own for this clip; test_queue checks that a released clip is queued
        # again, which this one, labeled by another test, is not).
        mine = [r.status for r in rows if r.annotator == "keep"]
        assert mine == ["expired"], mine


def lease_end(stack: UiStack, annotator: str) -> datetime | None:
    """When the annotator's lease ends (past or not: nobody may have swept it yet); None when
    they hold none."""
    with session_scope(stack.settings.database_url) as s:
        end = s.scalar(
            select(QueueItem.lease_expires_at).where(
                QueueItem.annotator == annotator, QueueItem.status == "leased"
            )
        )
    return None if end is None else end.replace(tzinfo=UTC)  # SQLite hands back naive UTC


def holds_live_lease(stack: UiStack, annotator: str) -> bool:
    end = lease_end(stack, annotator)
    return end is not None and end > utcnow()


def test_a_closed_tab_hands_the_clip_back_within_the_hold(ui_stack: UiStack, browser: Any) -> None:
    """Issue 20: the Label page holds its clip briefly and the open tab keeps renewing the
    hold, on any page; closing the tab lets the clip go within the hold, not the 600 s lease.
    A UI process of its own (same API) with a 10 s hold and a 2 s heartbeat."""
    from playwright.sync_api import expect

    # A clip of its own, never labeled (the module's clips are): a lapsed lease on a labeled
    # clip is not queued again.
    (clip,) = add_clips(ui_stack.settings.database_url, 1, sha="e")
    free_queue(ui_stack.settings)
    token = new_token(ui_stack.settings, "tab")
    short = ui_stack.settings.model_copy(
        update={
            "ui_port": free_port(),
            "ui_lease_hold_seconds": HOLD_S,
            "ui_lease_heartbeat_seconds": BEAT_S,
        }
    )
    with running_stack(short, ["ui"]):
        ui_url = f"http://127.0.0.1:{short.ui_port}"
        wait_until(lambda: _ui_up(ui_url), timeout_s=60, what="the short-hold UI")
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        try:
            page.goto(ui_url)
            sign_in(page, token)
            expect(page.get_by_text("The queue is empty")).to_be_visible()
            queue_clips(ui_stack.settings, [clip])
            page.get_by_role("button", name="Check again").click()
            expect(page.get_by_text(f"clip {clip} · video")).to_be_visible()
            settle(page)
            first_end = lease_end(ui_stack, "tab")
            assert first_end is not None
            assert first_end - utcnow() <= timedelta(seconds=HOLD_S)  # a short hold, not 600 s

            # On another page for longer than the hold: the heartbeat keeps the lease.
            visit(page, "Dashboard")
            wait_until(
                lambda: utcnow() > first_end + timedelta(seconds=BEAT_S),
                timeout_s=HOLD_S + 10,
                what="the first hold to pass",
            )
            assert holds_live_lease(ui_stack, "tab"), (lease_end(ui_stack, "tab"), utcnow())
            assert leased(ui_stack) == 1
        finally:
            context.close()  # the tab closes: no more beats
        closed_at = utcnow()
        wait_until(
            lambda: not holds_live_lease(ui_stack, "tab"),
            timeout_s=HOLD_S + 2 * BEAT_S + 5,
            what="the closed tab's lease to end",
        )
        end = lease_end(ui_stack, "tab")
        assert end is not None and end <= closed_at + timedelta(seconds=HOLD_S), (end, closed_at)
    # The clip is free for the next person now, long before the 600 s lease would end.
    with TagloopClient(ui_stack.settings.api_url, new_token(ui_stack.settings, "next")) as nxt:
        taken = nxt.request("GET", "/api/v1/queue/next").json()
    assert taken["clip"]["id"] == clip
    with session_scope(ui_stack.settings.database_url) as s:
        mine = s.scalars(select(QueueItem.status).where(QueueItem.annotator == "tab")).all()
    assert list(mine) == ["expired"]


def test_admin_sees_the_admin_controls_and_signs_out(ui_stack: UiStack, page: Any) -> None:
    """The controls the annotator must not see are there for an admin (so their absence
    above means something), and sign-out leaves an empty sign-in form."""
    from playwright.sync_api import expect

    free_queue(ui_stack.settings)
    me = ui_stack.admin.request("GET", "/api/v1/me").json()
    page.goto(ui_stack.ui_url)
    sign_in(page, ui_stack.settings.admin_token_path.read_text().strip())
    expect_signed_in(page, me["name"], "admin")
    expect(page.get_by_text("The queue is empty")).to_be_visible()
    for title in PAGES[1:]:
        visit(page, title)
        expect_signed_in(page, me["name"], "admin")
        if title == "Models":
            expect(
                page.get_by_role("button", name=f"Promote v{ui_stack.ready_version}")
            ).to_be_visible()
            continue
        for control in admin_controls(page, title):
            expect(control.first).to_be_attached()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("Enter a token")).to_be_visible()
    expect(page.get_by_label("API token")).to_have_value("")
    expect(page.get_by_test_id("stSidebar")).not_to_contain_text("Signed in as")


@pytest.mark.parametrize("single_user", [False, True])
def test_only_the_single_user_flag_signs_in_the_local_admin(
    ui_stack: UiStack, monkeypatch: pytest.MonkeyPatch, single_user: bool
) -> None:
    """The admin token on disk is used unasked only with TAGLOOP_UI_SINGLE_USER (``tagloop
    up``); after sign-out it is not used again in that session."""
    monkeypatch.setenv("TAGLOOP_API_URL", ui_stack.settings.api_url)
    monkeypatch.setenv("TAGLOOP_DATA_DIR", str(ui_stack.settings.data_dir))
    if single_user:
        monkeypatch.setenv("TAGLOOP_UI_SINGLE_USER", "1")
    else:
        monkeypatch.delenv("TAGLOOP_UI_SINGLE_USER", raising=False)
    get_settings.cache_clear()
    try:
        assert ui_stack.settings.admin_token_path.exists()
        at = AppTest.from_file(str(REPO / "ui" / "views" / "tags.py"), default_timeout=60)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        sidebar = "\n".join(str(m.value) for m in at.sidebar.markdown)
        if not single_user:
            assert "Enter a token" in "\n".join(str(i.value) for i in at.sidebar.info)
            assert "Signed in as" not in sidebar
            return
        assert "Signed in as" in sidebar and "· admin" in sidebar
        assert at.title[0].value == "Tags"
        (sign_out,) = [b for b in at.sidebar.button if b.label == "Sign out"]
        sign_out.click().run()
        assert "Enter a token" in "\n".join(str(i.value) for i in at.sidebar.info)
        assert "Signed in as" not in "\n".join(str(m.value) for m in at.sidebar.markdown)
    finally:
        get_settings.cache_clear()


def test_docker_compose_ui_is_not_single_user() -> None:
    """The compose UI is served to others: nobody gets the admin token, no Deploy button."""
    lines = [
        line.split("#", 1)[0] for line in (REPO / "docker-compose.yml").read_text().splitlines()
    ]
    # Not in the ui service nor in the environment every service shares.
    assert not [line for line in lines if "UI_SINGLE_USER" in line]
    start = lines.index("  ui:")
    (command,) = [line for line in lines[start:] if line.strip().startswith("command:")][:1]
    assert '"--client.toolbarMode", "viewer"' in command


def test_launcher_hides_the_deploy_button(tmp_path: Path) -> None:
    from tagloop.launcher import child_specs

    (ui,) = child_specs(Settings(data_dir=tmp_path), components=["ui"])
    i = ui.argv.index("--client.toolbarMode")
    assert ui.argv[i + 1] in ("viewer", "minimal")
