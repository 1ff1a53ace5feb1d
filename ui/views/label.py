"""Label: the next clip from the queue, the model's suggestions, submit or skip.

Shortcuts: 1-9 toggle the suggestions, Enter submits, S skips without a reason (Streamlit
button shortcuts); "Skip with a reason" says why (unclear, not applicable, or in words).
Enter submits exactly the checked tags, also while the tag box has the focus: a small script
(``ENTER_SUBMITS``) takes Enter from the box before its dropdown can add the highlighted
option. Only admins may type new tags into the box (only they can create tags).
When the holdout (the random audit sample) has clips waiting, a sidebar toggle labels from
its queue instead of the active-learning one.

A vocabulary of 10,000 tags is never fetched whole: "Find a tag" searches the API as one
types (the exact name first, then names that start with it), and each of its answers is a
button that checks one tag; no control selects a whole result set. The model's suggestions
come first, and the API leaves out tags its training data had no positive of.

What the annotator checks and unchecks belongs to the lease (ui/label_draft.py): it survives
reruns, visits to other pages and a browser reload, and goes when the clip is labeled,
skipped or handed back on sign-out. The sidebar's controls keep their values across pages too.
A label is complete: a tag left unchecked is a no, and a group with no checked tag means
"none of these", unless the annotator picks the group under "Not sure about" (sent as
``unsure_groups``; a group marked there takes no checked tag, as the API requires).
The lease itself is held briefly and renewed while the tab is open (ui/lease_heartbeat.py), so
a closed tab hands the clip back within ``TAGLOOP_UI_LEASE_HOLD_SECONDS``.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from tagloop.client import TagloopClient
from tagloop.config import get_settings
from tagloop.suggestions import prechecked_tags
from tagloop.training.thresholds import DEFAULT_THRESHOLD
from ui.api_client import ApiError, is_admin, search_tags, tag_exists
from ui.components import fetch_media, get_json, require_client, show_error
from ui.label_draft import (
    choose_tags,
    choose_unsure,
    conflicting_groups,
    draft_tags,
    draft_unsure,
    forget_lease,
    hold_lease,
    toggle_tag,
    write_url,
)
from ui.label_timer import seconds_on, start_timer
from ui.lease_heartbeat import lease_timing, mark_shown

state = st.session_state
# What the annotator picks -> what the API stores (``other`` sends the typed words instead).
SKIP_REASONS = {"unclear": "unclear", "not applicable": "not_applicable", "other": None}
HOLDOUT = "holdout"
# Element keys the script below finds the tag box and the submit button by (Streamlit gives a
# keyed element the class ``st-key-<key>``).
TAGS_BOX = "label_tags_box"
SUBMIT = "label_submit"
# Search answers shown under "Find a tag", each a button that checks one tag.
FOUND_SHOWN = 10
# The sidebar's pre-check controls (kept across pages, like the tags).
FITTED_CUTS = "label_fitted_cuts"
OWN_CUT = "label_own_cut"
# Enter inside the tag box: submit, and keep the key from the box, whose dropdown would add its
# highlighted option (or the typed text) to the tags. Capture phase on window runs before
# React's listeners; installed once per browser tab. Elsewhere the button's shortcut does it.
ENTER_SUBMITS = f"""<script>
(() => {{
  if (window.__tagloopEnterSubmits) return;
  window.__tagloopEnterSubmits = true;
  window.addEventListener("keydown", (e) => {{
    if (e.key !== "Enter" || e.isComposing || e.shiftKey || e.altKey || e.ctrlKey || e.metaKey) {{
      return;
    }}
    const box = document.querySelector(".st-key-{TAGS_BOX}");
    const submit = document.querySelector(".st-key-{SUBMIT} button");
    if (!box || !submit || !(e.target instanceof Node) || !box.contains(e.target)) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    if (!submit.disabled) submit.click();
  }}, true);
}})();
</script>"""


def _tags_key(lease_id: str) -> str:
    return f"label_tags_{lease_id}"


def _restore_widget(key: str, default: Any) -> None:
    """Give widget ``key`` the value it had when this page last ran: Streamlit drops a widget's
    state while a page without it runs, which turned the sidebar's controls back to their
    defaults after every visit to another page."""
    if key not in state:
        state[key] = state.get(f"{key}__kept", default)


def _keep_widget(key: str) -> None:
    state[f"{key}__kept"] = state[key]


def _choose_from_box(lease_id: str, key: str) -> None:
    choose_tags(lease_id, list(state[key]))


def _unsure_key(lease_id: str) -> str:
    return f"label_unsure_{lease_id}"


def _choose_unsure_from_box(lease_id: str, key: str) -> None:
    choose_unsure(lease_id, list(state[key]))


def _unsure_box(lease_id: str, shown_groups: list[str]) -> list[str]:
    """The "Not sure about" box: the groups of the tags on the page (and those already
    marked), kept with the lease's draft like the tags. Returns the groups marked unsure."""
    unsure = draft_unsure(lease_id)
    options = list(dict.fromkeys([*unsure, *shown_groups]))
    if not options:
        return unsure
    key = _unsure_key(lease_id)
    state[key] = unsure
    st.multiselect(
        "Not sure about",
        options=options,
        key=key,
        on_change=_choose_unsure_from_box,
        args=(lease_id, key),
        placeholder="Groups you cannot tell on this clip",
        help="A group with no checked tag means none of its tags applies; mark it here when "
        "you cannot tell instead, and the model learns nothing about that group from this "
        "clip. A group marked here takes no checked tag.",
    )
    return unsure


def _lease_next(client: TagloopClient, queue: str) -> dict[str, Any] | None:
    """Lease the next clip of ``queue`` (the API gives back the lease this annotator already
    holds there), held briefly: the heartbeat renews it while the tab is open."""
    hold = lease_timing(get_settings()).hold_s
    try:
        resp = client.request(
            "GET", "/api/v1/queue/next", params={"queue": queue, "hold_seconds": hold}
        )
    except ApiError as exc:
        show_error(exc)
        st.stop()
    if resp.status_code == 204:
        return None
    item: dict[str, Any] = resp.json()
    return item


def _done(lease_id: str, message: str) -> None:
    forget_lease(lease_id)
    state.pop("label_item", None)
    state["flash"] = message


def _create_missing_tags(client: TagloopClient, wanted: list[str], known: set[str]) -> bool:
    """POST /tags for new names typed into the picker (those neither shown on the page nor
    found by the API); annotators are told to ask an admin."""
    for name in [t for t in wanted if t not in known]:
        try:
            if tag_exists(client, name):
                continue
            client.request("POST", "/api/v1/tags", json={"name": name})
        except ApiError as exc:
            if exc.http_status == 403:
                st.error(
                    f"Tag '{name}' does not exist and only admins can create tags. "
                    "Pick an existing tag, or ask an admin to add it on the Tags page."
                )
            else:
                show_error(exc, what=f"creating tag '{name}'")
            return False
    return True


def _pick_queue(client: TagloopClient) -> str:
    """``holdout`` when the annotator chose the holdout queue, else ``al``. The toggle shows
    only while the holdout has clips waiting, or while it is on (so it does not vanish under
    someone labeling the last holdout clip)."""
    _restore_widget("label_holdout", False)
    if not state["label_holdout"]:
        holdout = get_json(client, "/api/v1/holdout")
        if int(holdout["queued"]) == 0:
            return "al"
    on = st.sidebar.toggle(
        "Holdout queue",
        key="label_holdout",
        help="Label the holdout: a random sample never trained on, which measures each model "
        "version without the bias of actively chosen clips.",
    )
    _keep_widget("label_holdout")
    return HOLDOUT if on else "al"


def _skip(client: TagloopClient, lease_id: str, clip_id: int, reason: str | None) -> None:
    """Give the clip back, with ``reason`` when one was given; a lease that already ended is
    as good as skipped."""
    try:
        client.request(
            "POST",
            f"/api/v1/queue/{lease_id}/skip",
            json=None if reason is None else {"reason": reason},
        )
    except ApiError as exc:
        if exc.code not in ("lease_closed", "lease_not_found"):
            show_error(exc, what="skip")
            st.stop()
    _done(lease_id, f"Skipped clip {clip_id}" + (f" ({reason})." if reason else "."))
    st.rerun()


def _show_session_stats() -> None:
    seconds: list[float] = state.get("seconds_per_clip", [])
    cols = st.sidebar.columns(2)
    cols[0].metric("Labeled this session", len(seconds))
    mean = sum(seconds) / len(seconds) if seconds else None
    cols[1].metric("Seconds per clip", "-" if mean is None else f"{mean:.1f}")


def _fitted_caption(tags: float | None, groups: float | None) -> str:
    parts = [
        f"tags {tags:.0%}" if tags is not None else "",
        f"groups {groups:.0%}" if groups is not None else "",
    ]
    return ", ".join(p for p in parts if p)


def _precheck_thresholds(tags: float | None, groups: float | None) -> tuple[float, float | None]:
    """(tags' cut, groups' cut): the model's own, fitted on the holdout, while the toggle is
    on, else the slider's for both: 0.5 is rarely where checked tags best match what people
    tag, and a many-way group's best guess rarely reaches it at all."""
    if tags is not None or groups is not None:
        _restore_widget(FITTED_CUTS, True)
        fitted = st.sidebar.toggle(
            f"Pre-check at the model's thresholds ({_fitted_caption(tags, groups)})",
            key=FITTED_CUTS,
            help="Fitted on the holdout: the cuts where the model's checked tags best matched "
            "people's tags (micro-F1), one for independent tags and one for a group's "
            "likeliest tag. Turn it off to choose your own.",
        )
        _keep_widget(FITTED_CUTS)
        if fitted:
            return (DEFAULT_THRESHOLD if tags is None else float(tags)), groups
    _restore_widget(OWN_CUT, DEFAULT_THRESHOLD)
    cut = float(
        st.sidebar.slider(
            "Pre-check suggestions at or above",
            min_value=0.0,
            max_value=1.0,
            step=0.05,
            key=OWN_CUT,
        )
    )
    _keep_widget(OWN_CUT)
    return cut, cut


st.title("Label")
client = require_client()
_show_session_stats()
queue = _pick_queue(client)
if flash := state.pop("flash", None):
    st.success(flash)

# A lease belongs to the token that took it and to its queue: another token or the other
# queue starts from its own lease (the API keeps the one left behind until it expires).
if (state.get("label_token"), state.get("label_queue")) != (state["token"], queue):
    state["label_token"], state["label_queue"], state["label_item"] = state["token"], queue, None
if state.get("label_item") is None:
    state["label_item"] = _lease_next(client, queue)
    if state["label_item"] is not None:
        hold_lease(state["label_item"]["lease_id"])
item: dict[str, Any] | None = state.get("label_item")
if item is None:
    if queue == HOLDOUT:
        st.info("The holdout queue is empty: every holdout clip is labeled, skipped or leased.")
    else:
        st.info("The queue is empty: every queued clip is labeled, skipped or leased to someone.")
    if st.button("Check again", icon=":material/refresh:"):
        st.rerun()
    st.stop()

clip, lease_id = item["clip"], item["lease_id"]
# Best first, each with its tag's group (the API leaves out tags the model never saw).
suggestions: list[dict[str, Any]] = list(item["suggestions"])
groups: dict[str, str | None] = {s["tag"]: s.get("group") for s in suggestions}
key = _tags_key(lease_id)
if queue == HOLDOUT:
    # The holdout grades the model and fits its threshold: pre-checked guesses that people
    # accept would pull its labels toward the model (automation bias), so nothing is.
    prechecked = []
else:
    threshold, group_threshold = _precheck_thresholds(
        item.get("decision_threshold"), item.get("group_threshold")
    )
    prechecked = prechecked_tags(
        suggestions, groups=groups, threshold=threshold, group_threshold=group_threshold
    )
# The box shows the lease's draft on every run: its own widget state is gone after a visit to
# another page (and a reload), the draft is not.
chosen = draft_tags(lease_id, prechecked=prechecked)
state[key] = chosen
write_url(lease_id)

left, right = st.columns([3, 2])
with left:
    media = fetch_media(client, clip["id"])
    if media is None:
        st.warning("This clip has no preview yet; label it from the suggestions or skip it.")
    else:
        st.video(media, format="video/mp4", autoplay=True, muted=True, loop=True)
    # The clip is on screen from this run on (not from when it was leased).
    start_timer(lease_id)
    mark_shown(lease_id)
    st.caption(
        f"clip {clip['id']} · video {clip['video_id']} · "
        f"{clip['start_s']:.1f}-{clip['end_s']:.1f} s · audio: {clip['has_audio']}"
    )
    reason = item["reason"]
    if queue == HOLDOUT:
        st.caption(
            "Why this clip: it is in the **holdout**, drawn at random to measure the model "
            "without bias; label it as you would any other."
        )
    else:
        st.caption(
            f"Why this clip: picked by **{reason['strategy']}** with score "
            f"{float(reason['score']):.3f} (rank {int(reason['rank']) + 1} in the queue)."
        )

with right:
    st.subheader("Suggestions")
    if not suggestions:
        st.caption("No model suggestions yet (no model has scored this clip).")
    elif queue == HOLDOUT:
        st.caption(
            "Nothing is pre-checked on a holdout clip: its labels grade the model, so they "
            "should be yours, not the model's."
        )
    for i, s in enumerate(suggestions[:9]):
        on = s["tag"] in chosen
        st.button(
            f"{'☑' if on else '☐'} {s['tag']} · {float(s['p']):.0%}",
            key=f"suggest_{lease_id}_{i}",
            shortcut=str(i + 1),
            on_click=toggle_tag,
            args=(lease_id, s["tag"]),
            type="primary" if on else "secondary",
            width="stretch",
        )
    query = st.text_input(
        "Find a tag",
        key=f"label_find_{lease_id}",
        max_chars=128,
        live=True,
        placeholder="Type part of a tag's name",
        help="Searches the whole vocabulary: the exact name first, then names that start "
        "with what you typed, then the others that hold it. Click a tag to check it.",
    )
    try:
        found = search_tags(client, query or "", limit=FOUND_SHOWN + 1)
    except ApiError as exc:
        show_error(exc, what="search")
        found = []
    for i, t in enumerate(found[:FOUND_SHOWN]):
        name = str(t["name"])
        on = name in chosen
        st.button(
            f"{'☑' if on else '☐'} {name}" + (f" ({t['group']})" if t["group"] else ""),
            key=f"found_{lease_id}_{i}",
            on_click=toggle_tag,
            args=(lease_id, name),
            type="primary" if on else "secondary",
            width="stretch",
        )
    if len(found) > FOUND_SHOWN:
        st.caption(f"The first {FOUND_SHOWN} matches; type more to narrow them down.")
    elif query and query.strip() and not found:
        st.caption(f"No tag holds '{query.strip()}'.")
    groups.update({str(t["name"]): t["group"] for t in found})
    admin = is_admin()
    with st.container(key=TAGS_BOX):
        st.multiselect(
            "Tags",
            # The model's suggestions first, then what the search found; never the whole
            # vocabulary, and no "Select all" / "Select N matches".
            options=list(dict.fromkeys([*chosen, *groups])),
            key=key,
            on_change=_choose_from_box,
            args=(lease_id, key),
            accept_new_options=admin,
            filter_mode="contains",
            select_all=False,
            placeholder="Checked tags; type a new one to create it" if admin else "Checked tags",
        )
    unsure = _unsure_box(lease_id, sorted({g for g in groups.values() if g}))
    # The API refuses a tag of a group also marked unsure (conflicting_unsure_group).
    conflicts = conflicting_groups(chosen, unsure, groups=groups)
    if conflicts:
        st.warning(
            f"Not sure about {', '.join(conflicts)}, yet a tag of it is checked: uncheck the "
            "tag or the group before submitting."
        )
    submit_col, skip_col = st.columns(2)
    submit = submit_col.button(
        "Submit", key=SUBMIT, type="primary", shortcut="Enter", width="stretch"
    )
    skip = skip_col.button("Skip", shortcut="S", width="stretch")
    with st.expander("Skip with a reason"):
        why = st.radio("Reason", list(SKIP_REASONS), key=f"skip_reason_{lease_id}", horizontal=True)
        other = st.text_input(
            "Other reason", key=f"skip_other_{lease_id}", max_chars=500, disabled=why != "other"
        )
        skip_why = st.button("Skip with reason", key=f"skip_why_{lease_id}", width="stretch")
    st.html(ENTER_SUBMITS, unsafe_allow_javascript=True)

if submit and conflicts:
    st.error(f"Not submitted: {', '.join(conflicts)} is both checked and marked unsure.")
elif submit and _create_missing_tags(client, chosen, set(groups)):
    seconds = round(seconds_on(lease_id), 2)
    body: dict[str, Any] = {"tags": chosen, "seconds_spent": seconds, "lease_id": lease_id}
    if not chosen:
        body["none_apply"] = True  # "none of the tags apply", said on purpose
    if unsure:
        body["unsure_groups"] = unsure  # unknown, not "none of these"
    try:
        client.request("POST", f"/api/v1/clips/{clip['id']}/labels", json=body)
    except ApiError as exc:
        show_error(exc, what="submit")
    else:
        state.setdefault("seconds_per_clip", []).append(seconds)
        unsure_note = f"; not sure about {', '.join(unsure)}" if unsure else ""
        _done(
            lease_id,
            f"Labeled clip {clip['id']} as {', '.join(chosen) or 'nothing'} in {seconds:.1f} s"
            f"{unsure_note}.",
        )
        st.rerun()
if skip:
    _skip(client, lease_id, clip["id"], None)
if skip_why:
    words = SKIP_REASONS[why] if why is not None else None
    if why == "other":
        words = other.strip() or None
    if why == "other" and words is None:
        st.warning("Type the reason, or pick unclear / not applicable.")
    else:
        _skip(client, lease_id, clip["id"], words)
