"""sha256 of data as canonical JSON: the one way this project fingerprints what it rated.

Rule sets, rating inputs, snapshots and findings imported without an id are each identified by
a hash of their JSON text. The text must be byte for byte what it was when a hash was stored,
or stored snapshots stop verifying and re-imported findings get new ids; so the forms in use
are spelled out here, once, and a test pins today's hashes:

    form      keys       separators   used for
    compact   sorted     "," ":"      snapshot content and chain hashes
    sorted    sorted     ", " ": "    the rules in force
    ordered   as given   ", " ": "    rating inputs, finding ids

Text is UTF-8 with Chinese as is (no \\u escapes); values JSON cannot hold (dates) are written
with `str`.
"""

from __future__ import annotations

import hashlib
import json
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, Literal

Form = Literal["compact", "sorted", "ordered"]


_ENCODERS = {
    form: json.JSONEncoder(
        ensure_ascii=False,
        sort_keys=form != "ordered",
        separators=(",", ":") if form == "compact" else None,
        default=str,
    )
    for form in ("compact", "sorted", "ordered")
}
"""One encoder per form, made once: what `json.dumps` would make on every call with these
arguments (the same text; a city's year hashes hundreds of thousands of records)."""


_MADE = (
    {
        form: c_make_encoder(
            None,  # no check for circular data: what is hashed is plain records
            e.default,
            encode_basestring,
            None,
            e.key_separator,
            e.item_separator,
            e.sort_keys,
            e.skipkeys,
            e.allow_nan,
        )
        for form, e in _ENCODERS.items()
    }
    if c_make_encoder is not None
    else None
)
"""The C encoder each `encode` call would make anew, made once (half the cost of a small
record's text)."""


quoted = encode_basestring
"""A string as the JSON text of every form writes it, quotes included (Chinese as is): for
code that writes JSON directly, a row or a record at a time."""


def canonical_json(data: Any, form: Form = "compact") -> str:
    """`data` as the JSON text of `form` (see the module docstring)."""
    if _MADE is None or isinstance(data, str):
        return _ENCODERS[form].encode(data)
    return "".join(_MADE[form](data, 0))


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def json_sha256(data: Any, form: Form = "compact") -> str:
    """`sha256:` and the hex digest of `data` as canonical JSON."""
    return "sha256:" + sha256_hex(canonical_json(data, form))
