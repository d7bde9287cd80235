"""Hypothesis strategies that corrupt valid files: hostile values, deleted keys, duplicates, truncation.

A corruption is a list of (position, operation, value) drawn independently of the document, then
applied to whatever node `position` picks among all nodes of the document (so every field, at any
depth, can be hit, and shrinking gives the smallest corruption that breaks a reader).
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

from hypothesis import strategies as st

# Values that have broken parsers before: wrong types, overflowing and non-finite numbers,
# path tricks, control and bidirectional characters, empty containers.
HOSTILE_SCALARS = [
    None, True, False, 0, -1, 1, 2**31, 2**63, 2**64 + 1, 10**400, -(10**400), 1e308, -1e308, 1e-310,
    math.nan, math.inf, -math.inf, -0.0, 0.5, "", "0", "1e999", "nan", "../escape.png", "/etc/passwd",
    "a\x00b", "\u202eevil", "猫.png", "ﬁ" * 3, "\ud800",
]
HOSTILE = st.one_of(
    st.sampled_from(HOSTILE_SCALARS),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.one_of(st.integers(-10, 60), st.floats(-10, 60), st.sampled_from([math.nan, "x", None])),
             max_size=8),
    st.just({}),
    st.dictionaries(st.sampled_from(["counts", "size", "id", "x"]),
                    st.one_of(st.integers(-5, 50), st.text(max_size=4), st.lists(st.integers(-5, 50), max_size=3)),
                    max_size=2),
)
OPERATIONS = ("replace", "delete", "duplicate")
CORRUPTIONS = st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(OPERATIONS), HOSTILE), min_size=1, max_size=3)
TRUNCATION = st.one_of(st.none(), st.floats(0.0, 1.0, exclude_max=True))


def node_paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every node of a json document as a path of keys / indices, the root first."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += node_paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += node_paths(v, prefix + (i,))
    return out


def corrupt(doc: Any, corruptions: list[tuple[int, str, Any]]) -> Any:
    """A corrupted deep copy of `doc` (see the module docstring)."""
    doc = copy.deepcopy(doc)
    for position, operation, value in corruptions:
        paths = node_paths(doc)
        path = paths[position % len(paths)]
        if not path:
            doc = copy.deepcopy(value)
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if operation == "replace":
            parent[key] = copy.deepcopy(value)
        elif operation == "delete":
            del parent[key]
        elif isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        else:
            parent[key] = [copy.deepcopy(parent[key])] * 2
    return doc


def json_text(doc: Any, truncate: float | None) -> str:
    """Serialise (NaN and Infinity as Python's json writes them), optionally cut at a fraction."""
    text = json.dumps(doc)  # ascii escapes: lone surrogates survive the trip
    return text if truncate is None else text[: int(len(text) * truncate)]
