"""Streamlit entry point (``streamlit run ui/app.py``); the pages live in ui/views/.

Not ui/pages/: Streamlit still treats a ``pages/`` folder beside the main script as a v1
multipage app until some session has called ``st.navigation``, so the first visitor of a
deep link (``/dashboard``) would get the page without this entry point (no layout, raw file
names in the sidebar).
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

# `streamlit run` puts ui/ on sys.path, not the repo root that holds the ui package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tagloop.config import get_settings
from ui.label_timer import pause_timer
from ui.lease_heartbeat import keep_leases, lease_timing

st.set_page_config(page_title="tagloop", layout="wide")
pages = [
    st.Page("views/label.py", title="Label", icon=":material/label:", default=True),
    st.Page("views/dashboard.py", title="Dashboard", icon=":material/monitoring:"),
    st.Page("views/clips.py", title="Clips", icon=":material/grid_view:"),
    st.Page("views/models.py", title="Models", icon=":material/model_training:"),
    st.Page("views/tags.py", title="Tags", icon=":material/sell:"),
    st.Page("views/videos.py", title="Ingest", icon=":material/movie:"),
]
page = st.navigation(pages)
if page.title != "Label":
    pause_timer()  # a clip's seconds_spent counts only while the Label page shows it


# The browser reruns this every beat while the tab is open, on every page: the clips this
# session leased stay held; a closed tab lets them go within the hold (ui/lease_heartbeat.py).
# Before page.run(): a page that stops early (st.stop) must not skip setting up the beat.
@st.fragment(run_every=lease_timing(get_settings()).heartbeat_s)
def _lease_heartbeat() -> None:
    keep_leases()


_lease_heartbeat()
page.run()
