"""The UI's only way to the data: the REST API with the user's token (never the database)."""

from __future__ import annotations

import streamlit as st

from tagloop.client import ApiError, TagloopClient
from tagloop.config import get_settings

__all__ = ["ApiError", "get_client"]


def get_client() -> TagloopClient | None:
    """A client for the token the user entered in the sidebar, or None before they do."""
    settings = get_settings()
    default = ""
    if settings.admin_token_path.exists() and "token" not in st.session_state:
        default = settings.admin_token_path.read_text().strip()
    token = st.sidebar.text_input(
        "API token", value=st.session_state.get("token", default), type="password"
    )
    st.session_state["token"] = token
    if not token:
        st.sidebar.info("Enter a token (`tagloop token create --name you`).")
        return None
    return TagloopClient(settings.api_url, token, timeout=30)
