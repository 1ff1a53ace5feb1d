"""The UI's only way to the data: the REST API with the user's token (never the database)."""

from __future__ import annotations

import streamlit as st

from tagloop.client import ApiError, TagloopClient
from tagloop.config import get_settings

__all__ = ["ApiError", "get_client"]


def get_client() -> TagloopClient | None:
    """A client for the token the user entered in the sidebar, or None before they do.

    On the machine that runs ``tagloop up`` the first admin token is offered as the default.
    """
    settings = get_settings()
    if "token" not in st.session_state:
        path = settings.admin_token_path
        st.session_state["token"] = path.read_text().strip() if path.exists() else ""
    # Keyed, so st.session_state["token"] is always what the box shows.
    token = st.sidebar.text_input("API token", key="token", type="password").strip()
    if not token:
        st.sidebar.info("Enter a token (`tagloop token create --name you`).")
        return None
    return TagloopClient(settings.api_url, token, timeout=30)
