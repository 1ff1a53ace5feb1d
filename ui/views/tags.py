"""Tags: the vocabulary; admins add tags one by one or import a whole taxonomy (tags sharing
a group are mutually exclusive). Shown a page at a time, or searched by name on the API."""

from __future__ import annotations

import streamlit as st

from ui.api_client import ApiError, is_admin
from ui.components import get_json, require_client, show_error

# Tags listed per page (the search narrows them; the export has them all).
PAGE = 500

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

if is_admin():  # POST /tags/import is an admin's
    with st.expander("Import a taxonomy (CSV or JSON)"):
        st.caption(
            "Columns name, group, parent, description (name required). All or nothing: any "
            "bad row stores nothing and every bad row is listed. Importing the same file "
            "again changes nothing; a row naming an existing tag updates its description "
            "and parent."
        )
        upload = st.file_uploader("Taxonomy file", type=["csv", "json"], key="tags_import")
        if upload is not None and st.button("Import", icon=":material/upload:"):
            fmt = "json" if upload.name.lower().endswith(".json") else "csv"
            try:
                done = client.request(
                    "POST",
                    "/api/v1/tags/import",
                    params={"format": fmt},
                    content=upload.getvalue(),
                    headers={"Content-Type": "application/json" if fmt == "json" else "text/csv"},
                ).json()
                st.success(
                    f"{done['rows']} rows: {done['created']} tags created, {done['updated']} "
                    f"updated, {done['unchanged']} unchanged."
                )
            except ApiError as exc:
                show_error(exc, what="import")
                if exc.details.get("errors"):
                    st.dataframe(exc.details["errors"], hide_index=True, width="stretch")

query = st.text_input("Find a tag", key="tags_find", placeholder="Part of a tag's name")
page = get_json(client, "/api/v1/tags", q=query.strip() or None, limit=PAGE)
tags = page["items"]
more = " (the first page)" if page["next_cursor"] else ""
if query.strip():
    st.caption(f"{len(tags)} tags match{more}: the exact name first, then names starting so.")
else:
    st.caption(f"{len(tags)} tags{more}, in the model's column order.")
st.dataframe(
    [
        {
            "name": t["name"],
            "group": t["group"] or "",
            "parent": t.get("parent") or "",
            "description": t["description"],
        }
        for t in tags
    ],
    hide_index=True,
    width="stretch",
)
for fmt in ("csv", "json"):
    if st.button(f"Prepare the whole vocabulary as {fmt.upper()}", key=f"tags_export_{fmt}"):
        data = client.request("GET", "/api/v1/tags/export", params={"format": fmt}).content
        st.download_button(f"Download tags.{fmt}", data, file_name=f"tags.{fmt}")
