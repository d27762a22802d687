"""Proof that no snapshot was altered: content hashes, the hash chain, signatures, the anchor,
and `verify`.

A snapshot's `content_hash` covers exactly what was rated and the result, so computing the
same year again from the same inputs and rules gives the same hash. Published snapshots are
chained: each one's `chain_hash` covers the previous one's, so editing, deleting or reordering
any published snapshot breaks every hash after it, and `verify` names the first snapshot that
no longer matches. The JSON forms are pinned (`scoring.hashing`): snapshots stored by earlier
versions still verify.

Hashes alone prove nothing against someone who can write to the database: they can recompute
them with these very functions. So two proofs live outside the database:

- a signature: when a signing key is configured (`CREDIT_SIGNING_KEY`, an Ed25519 private key
  in a file, never in the database), publishing signs the snapshot's chain hash
  (`SIGNED_PREFIX` + the chain hash, UTF-8) and stores the signature and the public key's
  fingerprint with it. Rewriting a snapshot and its hashes then needs the private key.
- the anchor: when `CREDIT_ANCHOR_FILE` is set, each publication appends a line to that file
  (its chain position, year, revision, chain hash and signature), so deleting the latest
  publications, or rewriting the whole chain, no longer goes unnoticed.

Snapshots published before signing began (or while no key was configured) are unsigned:
`verify` checks their hashes as before and counts them, without failing. Once one snapshot is
signed, every later publication must be signed (publishing refuses without the key, and
`verify` fails on an unsigned snapshot after a signed one).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection

from scoring.hashing import canonical_json, json_sha256, quoted
from service.core.errors import Conflict, NotConfigured
from service.ratings.snapshots import Snapshot, as_dict, every, rows_of

ROW_FIELDS = ("uscc", "name", "licence_no", "score", "grade", "vetoed", "vetoes", "points")


def content_hash(header: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """Hash of what was rated and the result: header fields plus every row, in uscc order.

    What later versions added is covered only when set, so snapshots stored before keep their
    hashes: a status (closed institutions listed as not rated, a suspended row's mark), and the
    parts every explanation shares (when set, each row's `explanation` holds its own parts)."""
    ordered = sorted(rows, key=lambda r: r["uscc"])
    content = {
        **_header_content(header),
        "rows": [_hashed_row(r) for r in ordered],
    }
    return json_sha256(content)


def _header_content(header: dict[str, Any]) -> dict[str, Any]:
    content = {f: header[f] for f in HEADER_FIELDS}
    for optional in OPTIONAL_HEADER_FIELDS:
        if header.get(optional):
            content[optional] = json.loads(header[optional])
    return content


class ContentHasher:
    """`content_hash`, taken row by row as the rows are made: the same digest of the same text,
    without holding every row of a national year.

    Rows must come in strictly increasing uscc order (the order `content_hash` sorts them in);
    a row out of order raises ValueError. `header` is the snapshot header `content_hash` takes.
    """

    def __init__(self, header: dict[str, Any]) -> None:
        fields = _header_content(header)
        # The text of a dict with sorted keys, the rows' list written in its place in between.
        parts = {k: canonical_json(k) + ":" + canonical_json(v) for k, v in fields.items()}
        before = [parts[k] for k in sorted(parts) if k < "rows"]
        after = [parts[k] for k in sorted(parts) if k > "rows"]
        self._digest = hashlib.sha256(
            ("{" + "".join(p + "," for p in before) + '"rows":[').encode("utf-8")
        )
        self._suffix = "]" + "".join("," + p for p in after) + "}"
        self._last: str | None = None

    def add(self, row: dict[str, Any]) -> None:
        """Take the next row."""
        uscc = row["uscc"]
        if self._last is not None and not uscc > self._last:
            raise ValueError(f"rows out of uscc order: {uscc} after {self._last}")
        text = _row_text(row) if _plain_row(row) else canonical_json(_hashed_row(row))
        self._digest.update((text if self._last is None else "," + text).encode("utf-8"))
        self._last = uscc

    def hexdigest(self) -> str:
        """The content hash (`sha256:` and hex); call once, after the last row."""
        self._digest.update(self._suffix.encode("utf-8"))
        return "sha256:" + self._digest.hexdigest()


HEADER_FIELDS = ("year", "scale", "ruleset_version", "rules_hash", "input_digest")
OPTIONAL_HEADER_FIELDS = ("not_rated", "explanation_parts")
"""JSON a header holds when it has them (migrations 0006, 0007): hashed as the data it is."""


_TEXT_FIELDS = ("explanation", "grade", "licence_no", "name", "points", "uscc", "vetoes")


def _plain_row(r: dict[str, Any]) -> bool:
    """Whether `_row_text` writes the row as `canonical_json` would: the types it expects."""
    return (
        all(type(r[f]) is str for f in _TEXT_FIELDS)
        and type(r["score"]) is int
        and type(r["vetoed"]) is bool
        and (not r.get("status") or type(r["status"]) is str)
    )


def _row_text(r: dict[str, Any]) -> str:
    """`canonical_json(_hashed_row(r))` (keys sorted, compact), written directly: a national
    year hashes a row for each institution."""
    status = r.get("status")
    return (
        f'{{"explanation":{quoted(r["explanation"])},"grade":{quoted(r["grade"])},'
        f'"licence_no":{quoted(r["licence_no"])},"name":{quoted(r["name"])},'
        f'"points":{quoted(r["points"])},"score":{int.__repr__(r["score"])},'
        + (f'"status":{quoted(status)},' if status else "")
        + f'"uscc":{quoted(r["uscc"])},"vetoed":{"true" if r["vetoed"] else "false"},'
        f'"vetoes":{quoted(r["vetoes"])}}}'
    )


def _hashed_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        **{f: r[f] for f in ROW_FIELDS},
        "explanation": r["explanation"],
        **({"status": r["status"]} if r.get("status") else {}),
    }


def chain_hash(snapshot: dict[str, Any], prev_hash: str) -> str:
    """Hash linking a published snapshot to the one published before it."""
    return json_sha256(
        {
            "prev_hash": prev_hash,
            "content_hash": snapshot["content_hash"],
            "year": snapshot["year"],
            "revision": snapshot["revision"],
            "supersedes": snapshot["supersedes"],
            "reason": snapshot["reason"],
            "published_at": _iso(snapshot["published_at"]),
            "published_by": snapshot["published_by"],
        }
    )


GENESIS = "sha256:" + "0" * 64


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite returns naive datetimes; we only ever store UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


# Signing -----------------------------------------------------------------------------------

SIGNED_PREFIX = "credit-rating snapshot v1\n"  # what is signed: this, then the chain hash


def fingerprint(key: Ed25519PublicKey) -> str:
    """`sha256:` and the hex digest of the raw 32-byte public key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def create_signing_key(path: Path) -> Ed25519PrivateKey:
    """Write a new Ed25519 private key to `path` (PEM, PKCS#8, mode 0600); never overwrites."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise Conflict(f"{path} already exists: a signing key is never overwritten") from None
    except OSError as exc:
        raise NotConfigured(f"cannot create the signing key {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    return key


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The private key in `path` (what CREDIT_SIGNING_KEY names)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NotConfigured(f"cannot read the signing key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise NotConfigured(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise NotConfigured(f"{path} is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (or the public half of a private key file)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NotConfigured(f"cannot read the key {path}: {exc.strerror}") from None
    if b"PRIVATE KEY" in data:
        return load_signing_key(path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise NotConfigured(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise NotConfigured(f"{path} is not an Ed25519 key")
    return key


def sign(key: Ed25519PrivateKey, chain: str) -> str:
    """The signature of a chain hash, base64."""
    return base64.b64encode(key.sign((SIGNED_PREFIX + chain).encode())).decode("ascii")


def signature_holds(key: Ed25519PublicKey, signature: str, chain: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), (SIGNED_PREFIX + chain).encode())
    except (InvalidSignature, ValueError):
        return False
    return True


# The anchor --------------------------------------------------------------------------------


def anchor_entry(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "seq": snapshot.chain_seq,
        "year": snapshot.year,
        "revision": snapshot.revision,
        "chain_hash": snapshot.chain_hash,
        "signature": snapshot.signature,
        "key_fingerprint": snapshot.key_fingerprint,
        "published_at": _iso(snapshot.published_at),
    }


def append_anchor(path: Path, snapshot: Snapshot) -> None:
    """Record a publication's chain head in the anchor file: one JSON line, synced to disk.

    Called inside the publishing transaction, as its last step: if the file cannot be written,
    nothing is published. (A crash between this line and the commit leaves a line for a
    publication that never happened; `verify` names it, as it would a deleted one.)
    """
    line = json.dumps(anchor_entry(snapshot), ensure_ascii=False, sort_keys=True) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise NotConfigured(f"cannot append to the anchor file {path}: {exc.strerror}") from None


def read_anchor(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The anchor file's entries, and a message for each line that cannot be read."""
    entries, problems = [], []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        return [], [f"anchor file {path}: cannot be read ({exc.strerror})"]
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict) or not isinstance(entry.get("seq"), int):
                raise ValueError
        except ValueError:
            problems.append(f"anchor file {path}, line {number}: not an anchor entry")
            continue
        entries.append(entry)
    return entries, problems


# Verification ------------------------------------------------------------------------------


@dataclass
class Verification:
    """What `check` found: problems (verify fails) and notes (said, but not failures)."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    snapshots: int = 0
    signed: int = 0


def _name(s: Snapshot) -> str:
    return f"snapshot {s.year} revision {s.revision}"


def verify(
    conn: Connection,
    *,
    public_keys: Iterable[Ed25519PublicKey] = (),
    anchor_file: Path | None = None,
) -> list[str]:
    """Recompute every hash from the stored rows; one message per snapshot that fails."""
    return check(conn, public_keys=public_keys, anchor_file=anchor_file).problems


def check(
    conn: Connection,
    *,
    public_keys: Iterable[Ed25519PublicKey] = (),
    anchor_file: Path | None = None,
) -> Verification:
    """Every check `verify` makes: content hashes, the chain, signatures, the anchor.

    Signatures are checked against `public_keys` (the configured signing key's, and any older
    ones given); without any, they are not checked, and a note says so. `anchor_file`, when
    given, is compared with the chain: each publication it records must be in the database
    with the same chain hash and signature, and nothing may be published after its last one.
    """
    result = Verification()
    problems = result.problems
    stored = every(conn)
    result.snapshots = len(stored)
    for s in stored:
        header = as_dict(s)
        recomputed = content_hash(header, rows_of(conn, s))
        if recomputed != s.content_hash:
            problems.append(
                f"snapshot {s.year} revision {s.revision} (id {s.id}): rows do not match "
                "its content hash"
            )
    prev = GENESIS
    chained = sorted((s for s in stored if s.chain_seq is not None), key=lambda s: s.chain_seq or 0)
    for expected_seq, s in enumerate(chained, start=1):
        header = as_dict(s)
        if s.status != "published" or s.chain_seq != expected_seq or s.prev_hash != prev:
            problems.append(f"snapshot {s.year} revision {s.revision}: hash chain is broken")
        elif chain_hash(header, prev) != s.chain_hash:
            problems.append(f"snapshot {s.year} revision {s.revision}: chain hash does not match")
        prev = s.chain_hash or ""
    unchained = [s for s in stored if s.status == "published" and s.chain_seq is None]
    problems += [
        f"snapshot {s.year} revision {s.revision}: published but not chained" for s in unchained
    ]
    _check_signatures(chained, {fingerprint(k): k for k in public_keys}, result)
    if anchor_file is not None:
        _check_anchor(chained, anchor_file, result)
    else:
        result.notes.append(
            "no anchor file (CREDIT_ANCHOR_FILE): the deletion of the latest publications "
            "cannot be detected"
        )
    return result


def _check_signatures(
    chained: list[Snapshot], keys: dict[str, Ed25519PublicKey], result: Verification
) -> None:
    first_signed: Snapshot | None = None
    unsigned = unchecked = 0
    for s in chained:
        if s.signature is None:
            if first_signed is None:
                unsigned += 1
            else:
                result.problems.append(
                    f"{_name(s)}: unsigned, but published after signing began "
                    f"({_name(first_signed)})"
                )
            continue
        first_signed = first_signed or s
        result.signed += 1
        if not keys:
            unchecked += 1
            continue
        key = keys.get(s.key_fingerprint or "")
        # The signature is checked against the chain hash recomputed from the stored fields, so
        # a snapshot whose chain hash was rewritten to match is named here as well.
        chain = chain_hash(as_dict(s), s.prev_hash or "")
        if key is None:
            result.problems.append(
                f"{_name(s)}: signed with key {s.key_fingerprint}, which is not a key verify "
                "was given (CREDIT_SIGNING_KEY, --public-key)"
            )
        elif chain != s.chain_hash or not signature_holds(key, s.signature, chain):
            result.problems.append(f"{_name(s)}: signature does not match")
    if unsigned:
        result.notes.append(
            f"{unsigned} published snapshot(s) unsigned: published before signing began "
            "(their hashes and chain are checked, not a signature)"
        )
    if unchecked:
        result.notes.append(
            f"{unchecked} signature(s) not checked: no public key given "
            "(CREDIT_SIGNING_KEY or --public-key)"
        )


def _check_anchor(chained: list[Snapshot], path: Path, result: Verification) -> None:
    entries, unreadable = read_anchor(path)
    result.problems += unreadable
    if not entries:
        result.notes.append(f"anchor file {path} holds no publication yet: nothing to compare")
        return
    anchored = {e["seq"]: e for e in entries}  # a later line for a position wins
    by_seq = {s.chain_seq: s for s in chained}
    for seq, entry in sorted(anchored.items()):
        s = by_seq.get(seq)
        if s is None:
            result.problems.append(
                f"snapshot {entry.get('year')} revision {entry.get('revision')} (publication "
                f"{seq}, chain hash {entry.get('chain_hash')}): recorded in the anchor file but "
                "not in the database: deleted or unpublished (or, if its draft is still there, "
                "its publishing transaction failed after the anchor was written: publishing it "
                "again settles that)"
            )
        elif s.chain_hash != entry.get("chain_hash"):
            result.problems.append(
                f"{_name(s)}: chain hash differs from the one recorded in the anchor file"
            )
        elif entry.get("signature") is not None and s.signature != entry.get("signature"):
            result.problems.append(
                f"{_name(s)}: signature differs from the one recorded in the anchor file"
            )
    last = max(anchored)
    result.problems += [
        f"{_name(s)}: published after the last publication in the anchor file ({last})"
        for s in chained
        if (s.chain_seq or 0) > last
    ]
