"""Tags: the vocabulary; admins add tags (tags sharing a group are mutually exclusive)."""

from __future__ import annotations

import streamlit as st

from ui.api_client import ApiError, is_admin
from ui.components import get_json, require_client, show_error

st.title("Tags")
client = require_client()

if is_admin():  # POST /tags is an admin's
    with st.form("new_tag", clear_on_submit=True):
        st.markdown("**New tag**")
        name = st.text_input("Name")
        group = st.text_input("Group (optional: tags of one group exclude each other)")
        description = st.text_input("Description")
        if st.form_submit_button("Create tag") and name.strip():
            try:
                client.request(
                    "POST",
                    "/api/v1/tags",
                    json={"name": name, "group": group or None, "description": description},
                )
                st.success(f"Created tag '{name.strip()}'.")
            except ApiError as exc:
                show_error(exc, what=f"tag '{name.strip()}'")

tags = get_json(client, "/api/v1/tags")["items"]
st.caption(f"{len(tags)} tags, in the model's column order.")
st.dataframe(
    [{"name": t["name"], "group": t["group"] or "", "description": t["description"]} for t in tags],
    hide_index=True,
    width="stretch",
)
