"""Property-based requests for every operation of an OpenAPI document, and the checks every
answer must pass (a small, dependency-free stand-in for schemathesis, on hypothesis).

``operations(doc)`` lists the document's operations; ``request_for(op, doc, known=...)`` is a
hypothesis strategy of requests for one of them: path and query parameters and JSON or
multipart bodies drawn from the schemas, mixed with hostile values (lone surrogates, NUL,
numbers far out of range, NaN and Infinity, NaN-like strings, type confusion, missing and
unknown fields, invalid JSON, invalid UTF-8 in the URL) and with the ids of rows that exist
(``known``), so routes get past their lookups too. ``check_response`` says what is wrong with
an answer: a 5xx, a 4xx without the ``{"error": {"code", "message"}}`` body, a body over the
size bound, or a 2xx that claims JSON and is not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import strategies as st

JSON_TYPE = "application/json"
HTTP_METHODS = ("get", "put", "post", "delete", "patch")

HOSTILE_STRINGS: list[str] = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "1e999",
    "-0",
    "0x1F",
    "9" * 40,
    "../../../etc/passwd",
    "%00",
    "%2e%2e%2f",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "\u202eevil",
    "\ufeffbom",
    "\U0001d518\U0001d52b\U0001d526",  # letters outside the BMP
    "x" * 5_000,
    "\r\nX-Injected: 1",
    "{{7*7}}",
    "null",
    "true",
    "[]",
    "{}",
]
HOSTILE_NUMBERS: list[Any] = [
    0,
    -1,
    1,
    2**31 - 1,
    2**31,
    2**53 + 1,
    2**63,
    2**64,
    -(2**63) - 1,
    10**30,
    1e308,
    -1e308,
    1e-320,
    0.5,
    -0.0,
    float("nan"),
    float("inf"),
    float("-inf"),
]
HOSTILE_IDS: list[Any] = [
    *HOSTILE_NUMBERS,
    "abc",
    "1.5",
    "1e3",
    "+1",
    " 1",
    "1 ",
    "1_0",
    "\uff11",  # a fullwidth digit one, which int() accepts
    "..",
    "/",
    "a" * 300,
    "\x00",
    "\ud800",
]
# Raw bodies that are not (standard) JSON at all, or JSON nested past any parser's taste.
HOSTILE_RAW_BODIES: list[bytes] = [
    b"",
    b"{",
    b"\xff\xfe\xfd",
    b"null",
    b"[]",
    b'"str"',
    b"NaN",
    b'{"tags": [NaN]}',
    b"[" * 50_000 + b"]" * 50_000,
    b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    b"\x00" * 64,
]
RANGE_HEADERS = [
    "bytes=0-",
    "bytes=-0",
    "bytes=5-1",
    "bytes=0-1,2-3",
    "bytes=99999999999999999999999-",
    "bytes=-99999999999999999999999",
    "items=0-1",
    "bytes=\u00bd-",
]
ANY_JSON: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(HOSTILE_STRINGS + HOSTILE_NUMBERS),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # the template, e.g. /api/v1/clips/{clip_id}
    spec: Mapping[str, Any]

    @property
    def key(self) -> str:
        return f"{self.method.upper()} {self.path}"


@dataclass
class FuzzRequest:
    """One drawn request, printable as the exact case that failed."""

    method: str
    url: str  # path + query string, percent-encoded
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    files: dict[str, tuple[str, bytes, str]] | None = None

    def describe(self) -> str:
        body = ""
        if self.content is not None:
            body = f" body={self.content[:300]!r}" + (" ..." if len(self.content) > 300 else "")
        if self.files is not None:
            body = f" files={ {k: (v[0], len(v[1])) for k, v in self.files.items()} }"
        return f"{self.method} {self.url[:300]} headers={self.headers}{body}"


def operations(doc: Mapping[str, Any]) -> list[Operation]:
    """Every (method, path) of the document, in its order."""
    return [
        Operation(method, path, spec)
        for path, item in doc["paths"].items()
        for method, spec in item.items()
        if method in HTTP_METHODS
    ]


def resolve(schema: Mapping[str, Any], doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """``schema`` with its ``$ref`` (to ``#/components/...``) followed."""
    while "$ref" in schema:
        node: Any = doc
        for part in str(schema["$ref"]).removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def url_part(value: Any) -> str:
    """``value`` as it goes into a URL: text as UTF-8, lone surrogates as the invalid bytes
    they would be (so the server sees invalid UTF-8), everything percent-encoded."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = repr(value)
    else:
        text = str(value)
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def _hostile_any() -> st.SearchStrategy[Any]:
    return st.sampled_from(HOSTILE_STRINGS + HOSTILE_NUMBERS + [None, True, [], {}])


def from_schema(
    schema: Mapping[str, Any],
    doc: Mapping[str, Any],
    *,
    hostile: bool,
    known: Mapping[str, Sequence[Any]] | None = None,
    name: str = "",
    depth: int = 0,
) -> Any:
    """A strategy of JSON values for ``schema``. ``hostile``: values at and past its bounds,
    hostile strings and numbers, and now and then a value of another type altogether; else
    what the schema describes, with the values of ``known[name]`` (rows that exist) among them,
    so a request gets past validation and lookups to the route's own code."""
    schema = resolve(schema, doc)
    known = known or {}
    drawn = _conforming(schema, doc, hostile=hostile, known=known, depth=depth)
    options = [drawn]
    if known.get(name):
        options.append(st.sampled_from(list(known[name])))
    if hostile:
        options += [drawn, _hostile_any()]
    return st.one_of(options)


def _conforming(
    schema: Mapping[str, Any],
    doc: Mapping[str, Any],
    *,
    hostile: bool,
    known: Mapping[str, Sequence[Any]],
    depth: int,
) -> Any:
    def inner(sub: Mapping[str, Any], name: str = "") -> Any:
        return from_schema(sub, doc, hostile=hostile, known=known, name=name, depth=depth + 1)

    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([inner(s) for s in schema[key]])
    if "enum" in schema:
        values = st.sampled_from(list(schema["enum"]))
        return values | st.sampled_from(HOSTILE_STRINGS) if hostile else values
    kind = schema.get("type")
    if kind == "string":
        limit = int(schema.get("maxLength", 64))
        if not hostile:
            return st.text(st.characters(codec="utf-8"), min_size=1, max_size=min(limit, 24))
        return st.one_of(
            st.text(max_size=min(limit, 64)),
            st.text(min_size=limit, max_size=limit + 2) if "maxLength" in schema else st.nothing(),
            st.sampled_from(HOSTILE_STRINGS),
        )
    if kind == "integer":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if not hostile:
            return st.integers(min_value=lo if lo is not None else -5, max_value=hi)
        edges = [e + d for e in (lo, hi) if e is not None for d in (-1, 0, 1)]
        return st.one_of(
            st.integers(min_value=lo, max_value=hi),
            st.sampled_from(edges or [0]),
            st.sampled_from(HOSTILE_NUMBERS),
        )
    if kind == "number":
        if not hostile:
            return st.floats(min_value=schema.get("minimum", -1e6), max_value=1e6)
        return st.floats() | st.integers() | st.sampled_from(HOSTILE_NUMBERS)
    if kind == "boolean":
        return (
            st.booleans() | st.sampled_from(["true", "yes", 1, 0, "0"])
            if hostile
            else st.booleans()
        )
    if kind == "null":
        return st.none()
    if kind == "array":
        items = inner(schema.get("items", {}))
        if not hostile:
            return st.lists(items, max_size=4)
        many = st.lists(st.sampled_from(["a", "dog", "\x00", 1]), min_size=300, max_size=600)
        return st.lists(items, max_size=5) | many
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {}) if depth <= 3 else {}
        required = set(schema.get("required", []))
        optional = {k: inner(v, k) for k, v in props.items() if k not in required}
        if hostile:
            optional["unexpected"] = ANY_JSON
        objects = st.fixed_dictionaries(
            {k: inner(v, k) for k, v in props.items() if k in required}, optional=optional
        )
        if not hostile:
            return objects
        return objects | st.dictionaries(st.sampled_from([*props, "x"]), ANY_JSON, max_size=3)
    return ANY_JSON  # an open schema ({}): any JSON at all


def _param_value(
    param: Mapping[str, Any],
    doc: Mapping[str, Any],
    known: Mapping[str, Sequence[Any]],
    *,
    hostile: bool,
) -> st.SearchStrategy[Any]:
    name = str(param["name"])
    drawn = from_schema(param.get("schema", {}), doc, hostile=hostile, known=known, name=name)
    if param["in"] == "path" and hostile:
        return drawn | st.sampled_from(HOSTILE_IDS)
    return drawn


@st.composite
def request_for(
    draw: st.DrawFn,
    op: Operation,
    doc: Mapping[str, Any],
    *,
    known: Mapping[str, Sequence[Any]],
) -> FuzzRequest:
    """A hypothesis strategy of requests for ``op`` (``known``: parameter name -> values of
    rows that exist, e.g. ``{"clip_id": [1, 2]}``). Half the requests are hostile through and
    through, half are well-formed (so that routes are fuzzed past their validation)."""
    hostile = draw(st.booleans())
    path = op.path
    query: list[tuple[str, str]] = []
    headers: dict[str, str] = {}
    for param in op.spec.get("parameters", []):
        where, name = param["in"], str(param["name"])
        if where == "path":
            value = draw(_param_value(param, doc, known, hostile=hostile))
            path = path.replace("{" + name + "}", url_part(value))
        elif where == "query" and (param.get("required") or draw(st.booleans())):
            value = draw(_param_value(param, doc, known, hostile=hostile))
            query.append((name, url_part(value)))
    if hostile and draw(st.integers(0, 4)) == 0:
        query.append((url_part(draw(st.sampled_from(HOSTILE_STRINGS))), "1"))
    if op.method == "get" and hostile and draw(st.integers(0, 2)) == 0:
        headers["Range"] = draw(st.sampled_from(RANGE_HEADERS))
    url = path + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")
    request = FuzzRequest(op.method.upper(), url, headers)

    body = op.spec.get("requestBody")
    if body is None:
        return request
    content = body.get("content", {})
    if "multipart/form-data" in content:
        name = draw(
            st.sampled_from([*HOSTILE_STRINGS, "clip.mp4"]) if hostile else st.just("a.mp4")
        )
        # A header cannot carry a lone surrogate; its bytes as Latin-1 are as hostile.
        name = name.encode("utf-8", "surrogatepass").decode("latin-1")
        files = list(known.get("file", []))
        blob = draw(st.sampled_from(files) if files and not hostile else st.binary(max_size=2048))
        kind = draw(st.sampled_from(["video/mp4", "text/plain", "application/octet-stream"]))
        field_name = draw(st.sampled_from(["file", "other"])) if hostile else "file"
        request.files = {field_name: (name, blob, kind)}
        return request
    if JSON_TYPE in content:
        choice = draw(st.integers(0, 4)) if hostile else 4
        if choice == 0 and not body.get("required"):
            return request  # no body at all
        if choice == 1:
            request.content = draw(st.sampled_from(HOSTILE_RAW_BODIES))
        else:
            schema = content[JSON_TYPE].get("schema", {})
            value = draw(from_schema(schema, doc, hostile=hostile, known=known))
            request.content = json.dumps(value, allow_nan=True).encode()
        kinds = [JSON_TYPE, JSON_TYPE, "text/plain"] if hostile else [JSON_TYPE]
        request.headers["Content-Type"] = draw(st.sampled_from(kinds))
    return request


def send(client: httpx.Client, request: FuzzRequest, *, auth: Mapping[str, str]) -> httpx.Response:
    # Header values as UTF-8 bytes: httpx takes only ASCII text, a server gets any bytes.
    headers = {
        k: v.encode("utf-8", "surrogatepass") for k, v in {**auth, **request.headers}.items()
    }
    return client.request(
        request.method,
        request.url,
        headers=headers,
        content=request.content,
        files=request.files,
    )


def check_response(response: httpx.Response, *, max_bytes: int) -> list[str]:
    """What is wrong with ``response``: no 5xx, a 4xx carries ``{"error": {"code",
    "message"}}`` (both strings), no body over ``max_bytes``, a 2xx that says JSON is JSON."""
    problems = []
    status = response.status_code
    body = response.content
    if status >= 500:
        problems.append(f"{status}: {body[:500]!r}")
    if len(body) > max_bytes:
        problems.append(f"body of {len(body)} bytes (bound {max_bytes})")
    is_json = response.headers.get("content-type", "").startswith(JSON_TYPE)
    if 400 <= status < 500:
        error = None
        if is_json:
            try:
                error = json.loads(body).get("error")
            except (ValueError, AttributeError):
                error = None
        if not (
            isinstance(error, dict)
            and isinstance(error.get("code"), str)
            and isinstance(error.get("message"), str)
            and error["code"]
        ):
            problems.append(f"{status} without the error shape: {body[:300]!r}")
    elif 200 <= status < 300 and is_json and body:
        try:
            json.loads(body)
        except ValueError:
            problems.append(f"{status} says JSON but is not: {body[:300]!r}")
    return problems
