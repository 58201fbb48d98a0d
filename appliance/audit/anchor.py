"""Signing the audit chain with a key kept outside the database, and exporting its head.

The hash chain alone shows that records were changed only to someone who does not recompute the
hashes; anyone with write access to the database can. So every record also carries an HMAC-SHA256
of its hash under ``APPLIANCE_AUDIT_KEY`` (environment or ``_FILE``, never the database), and
``verify_chain`` checks them: a rewrite made in the database alone no longer verifies. Removing the
newest records (or restoring an old copy of the database) leaves valid signatures behind, so the
head — its number, hash and signature — is exported periodically to a log line and, when
``APPLIANCE_AUDIT_ANCHOR_FILE`` is set, appended to that file; ``verify_audit_chain`` checks the
chain reaches every exported anchor.

Rotation: set a new key and move the old one to ``APPLIANCE_AUDIT_RETIRED_KEYS``; records name the
key that signed them by a short id (a hash of the key, not the key).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from console.env import derived_key

log = logging.getLogger("appliance.audit.anchor")

_DERIVE_LABEL = "appliance.audit.signing-key"  # console/settings.py derives the default key with it too


def _key_bytes(secret: str) -> bytes:
    return secret.encode()


def default_key(secret_key: str) -> str:
    """The key used when APPLIANCE_AUDIT_KEY is unset: derived from SECRET_KEY, also kept outside the database."""
    return derived_key(secret_key, _DERIVE_LABEL)


def key_id(secret: str) -> str:
    return hashlib.sha256(b"key-id:" + _key_bytes(secret)).hexdigest()[:12]


def _keys() -> dict[str, str]:
    found = {key_id(k): k for k in settings.APPLIANCE_AUDIT_RETIRED_KEYS}
    found[key_id(settings.APPLIANCE_AUDIT_KEY)] = settings.APPLIANCE_AUDIT_KEY
    return found


def _mac(secret: str, seq: int, chain_hash: str) -> str:
    return hmac.new(_key_bytes(secret), f"v1:{seq}:{chain_hash}".encode(), hashlib.sha256).hexdigest()


def sign(seq: int, chain_hash: str) -> tuple[str, str]:
    """(key id, signature) of record ``seq`` whose chain hash is ``chain_hash``, with the current key."""
    secret = settings.APPLIANCE_AUDIT_KEY
    return key_id(secret), _mac(secret, seq, chain_hash)


def check(seq: int, chain_hash: str, kid: str, signature: str) -> str:
    """ "" when the signature is valid, else what is wrong with it."""
    secret = _keys().get(kid)
    if secret is None:
        return f"signed with an unknown key ({kid or 'none'}): the key is neither current nor retired"
    if not hmac.compare_digest(_mac(secret, seq, chain_hash), signature):
        return "signature does not match: changed without the audit key"
    return ""


@dataclass(frozen=True)
class Anchor:
    """An exported head: the chain had record ``seq`` with hash ``hash`` at ``exported_at``."""

    seq: int
    hash: str
    key_id: str
    signature: str
    exported_at: str = ""

    def line(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def anchor_for(seq: int, chain_hash: str, kid: str, signature: str) -> Anchor:
    return Anchor(seq, chain_hash, kid, signature, timezone.now().isoformat())


def publish(anchor: Anchor) -> None:
    """Write the anchor where the database's owner cannot rewrite it: the log, and the anchor file."""
    log.info("audit anchor %s", anchor.line())
    path = settings.APPLIANCE_AUDIT_ANCHOR_FILE
    if path:
        with Path(path).open("a", encoding="utf-8") as fh:
            fh.write(anchor.line() + "\n")


@dataclass(frozen=True)
class AnchorLine:
    number: int
    anchor: Anchor | None
    problem: str = ""


def read_anchors(lines: Iterable[str]) -> Iterator[AnchorLine]:
    """Parse anchor lines (the file, or log lines ending in the JSON), checking each signature."""
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        try:
            data = json.loads(text[text.index("{") :])
            anchor = Anchor(
                int(data["seq"]),
                str(data["hash"]),
                str(data["key_id"]),
                str(data["signature"]),
                str(data.get("exported_at", "")),
            )
        except (ValueError, KeyError, TypeError):
            yield AnchorLine(number, None, "unreadable")
            continue
        problem = check(anchor.seq, anchor.hash, anchor.key_id, anchor.signature)
        yield AnchorLine(number, anchor, problem)
