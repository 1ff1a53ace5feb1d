"""Streamlit entry point (``streamlit run ui/app.py``); pages live in ui/pages/."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

# `streamlit run` puts ui/ on sys.path, not the repo root that holds the ui package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

st.set_page_config(page_title="tagloop", layout="wide")
pages = [st.Page("pages/videos.py", title="Videos", icon=":material/movie:")]
st.navigation(pages).run()
