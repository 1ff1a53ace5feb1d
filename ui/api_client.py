"""The UI's only way to the data: the REST API with the user's token (never the database)."""

from __future__ import annotations

import httpx
import streamlit as st

from tagloop.client import ApiError, TagloopClient
from tagloop.config import get_settings
from ui.label_draft import clear_url, release_held

__all__ = ["ApiError", "get_client", "is_admin", "search_tags", "tag_exists"]

# A search's answer is kept this long per (API, token, query): typing the same prefix again,
# and every rerun of the page, asks the API nothing (new tags show up within a minute).
SEARCH_TTL_SECONDS = 60


# Session keys. TOKEN is a plain key, never a widget's: Streamlit drops a widget's state when a
# page without that widget runs, which lost (and, with a pre-filled default, swapped) the token
# on every page change. IDENTITY is GET /me's answer for that token.
TOKEN = "token"
IDENTITY = "identity"
SIGNED_OUT = "signed_out"


def _sign_out(client: TagloopClient | None = None) -> None:
    """Hand the clips this session holds back to the queue, then forget everything of this
    browser session (the next person starts clean)."""
    if client is not None:
        release_held(client)
    clear_url()
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    st.session_state[SIGNED_OUT] = True


def _sign_in_form() -> None:
    with st.sidebar.form("sign_in", clear_on_submit=True):
        entered = st.text_input("API token", type="password")
        if st.form_submit_button("Sign in") and entered.strip():
            st.session_state[TOKEN] = entered.strip()
            st.session_state.pop(SIGNED_OUT, None)
            st.rerun()
    st.sidebar.info("Enter a token (`tagloop token create --name you`) and sign in.")


def _identity(client: TagloopClient, token: str) -> dict[str, str] | None:
    """The signed-in name and role (GET /me once per token); None, with the token forgotten,
    when the API does not accept it."""
    known = st.session_state.get(IDENTITY)
    if isinstance(known, dict) and known.get("token") == token:
        return known
    try:
        me = client.request("GET", "/api/v1/me").json()
    except ApiError as exc:
        if exc.http_status != 401:
            st.error(f"signing in: {exc.message}")
            st.stop()
        st.session_state.pop(TOKEN, None)
        st.session_state.pop(IDENTITY, None)
        st.error(f"The token was not accepted ({exc.code}); sign in again.")
        return None
    except httpx.HTTPError as exc:
        st.error(f"cannot reach the API at {client.http.base_url}: {exc}")
        st.stop()
    identity = {"token": token, "name": str(me["name"]), "role": str(me["role"])}
    st.session_state[IDENTITY] = identity
    return identity


def get_client() -> TagloopClient | None:
    """A client for the signed-in token, or None (with the sign-in form) before sign-in. The
    sidebar says who is signed in and offers sign-out.

    Only with ``ui_single_user`` (set by ``tagloop up`` for one person on their own machine)
    is the first visit signed in with the local admin token; otherwise nobody gets it.
    """
    settings = get_settings()
    state = st.session_state
    if settings.ui_single_user and not state.get(TOKEN) and not state.get(SIGNED_OUT):
        path = settings.admin_token_path
        if path.exists():
            state[TOKEN] = path.read_text().strip()
    token = str(state.get(TOKEN) or "").strip()
    if token:
        client = TagloopClient(settings.api_url, token, timeout=30)
        identity = _identity(client, token)
        if identity is not None:
            st.sidebar.markdown(f"Signed in as **{identity['name']}** · {identity['role']}")
            st.sidebar.button(
                "Sign out", on_click=_sign_out, args=(client,), icon=":material/logout:"
            )
            return client
    _sign_in_form()
    return None


def is_admin() -> bool:
    """Whether the signed-in token is an admin's: admin-only controls show for admins only."""
    identity = st.session_state.get(IDENTITY)
    return isinstance(identity, dict) and identity.get("role") == "admin"


@st.cache_data(ttl=SEARCH_TTL_SECONDS, max_entries=1024, show_spinner=False)
def _search(base_url: str, token: str, q: str, limit: int) -> list[dict[str, str | None]]:
    with TagloopClient(base_url, token, timeout=30) as client:
        items = client.request("GET", "/api/v1/tags", params={"q": q, "limit": limit}).json()
    return [
        {"name": t["name"], "group": t.get("group"), "parent": t.get("parent")}
        for t in items["items"]
    ]


def search_tags(client: TagloopClient, q: str, *, limit: int = 20) -> list[dict[str, str | None]]:
    """Tags whose name holds ``q`` (ignoring case and spacing), searched by the API: the
    exact match first, then names that start with ``q``, then the rest; at most ``limit``.
    Never the whole vocabulary (10,000 tags were 1 MB on every rerun). ``[]`` for an
    empty ``q``."""
    q = q.strip()
    if not q:
        return []
    token = str(client.http.headers["Authorization"]).removeprefix("Bearer ")
    return _search(str(client.http.base_url), token, q, limit)


def _same_name(a: str, b: str) -> bool:
    # The API's rule (tagloop.db.tags.tag_key) without its NFKC: enough to spot the match.
    return " ".join(a.casefold().split()) == " ".join(b.casefold().split())


def tag_exists(client: TagloopClient, name: str) -> bool:
    """Whether the vocabulary has ``name`` (ignoring case and spacing): the search's first
    answer is the exact match when there is one. Not cached: it runs before a new tag is
    created, where a stale no would try to create it twice."""
    q = name.strip()
    if not q:
        return False
    items = client.request("GET", "/api/v1/tags", params={"q": q, "limit": 1}).json()["items"]
    return bool(items) and _same_name(str(items[0]["name"]), q)
