"""The codes this campus issued, on record until they expire: the bot knows its own codes.

A code is signed so that anybody holding the public keys can check it, a gate device
offline included. The bot needs less: it issued the code. `PassService.issue` records every
code in the KV store, holding the person's id, for as long as the code is valid, under a
keyed hash of the code's text: BLAKE2b in its keyed mode (a MAC, RFC 7693), with a key
derived from the private half of the key that signed it (`campus.access.keys.record_secret`).
A guard's scan reads that entry with the guard's post, in the message's first round trip
(`handlers/guard.py`, `scan_prefetch`); a code on record for the person it names is one
this campus signed, so its signature is not checked a second time. Every other check is
made as before (docs/passcode.md, "Checking a code").

- Naming an entry takes the signing key's private half, which is what forging a signature
  takes: write access to the store, or the data key without the database, vouch for
  nothing, and the store never holds a code's text.
- Any change to a code's text names another entry: a tampered or forged code is never on
  record, and is checked by its signature, as is a code whose record is gone (the store
  flushed or restarted, a record not written because the store was down at issue) or whose
  key this process has not loaded yet.
"""

from __future__ import annotations

import binascii
import hashlib
import logging
from collections.abc import Mapping

from bot.keyspace import Keyspace
from bot.kv import KV
from campus.access.keys import KeyRing
from campus.access.token import KEY_ID_BYTES, PREFIX, TOKEN_CHARS, PassClaims

log = logging.getLogger(__name__)


# A scan names its code's entry twice, in the prefetch and in the check: the names of the
# last few texts are kept for the second time. Few: a bound on memory, and a code scanned
# again minutes later is named afresh, as it would be at a real gate.
_RECENT = 64


class IssuedCodes:
    def __init__(self, kv: KV, keys: Keyspace, ring: KeyRing) -> None:
        self._kv = kv
        self._keys = keys
        self._ring = ring
        self._recent: dict[str, str] = {}  # text → entry name, oldest first

    def key(self, text: str) -> str | None:
        """The entry a scanned text would be recorded under. None, and so no record, for
        what is no pass code by its length, prefix or non-ASCII characters (a poster's link,
        say), and for a code of a key this process has not loaded (nor signed with). Other
        junk gets a name that nothing is recorded under; `token.parse` refuses it."""
        text = text.strip()
        name = self._recent.get(text)
        if name is not None:
            return name
        if len(text) != TOKEN_CHARS or not text.startswith(PREFIX) or not text.isascii():
            return None
        # Bytes 0–5 of the code: the version, the key id, a byte of the person.
        head = text[len(PREFIX) : len(PREFIX) + 8].replace("-", "+").replace("_", "/")
        try:
            key_id = binascii.a2b_base64(head)[1 : 1 + KEY_ID_BYTES]
        except (binascii.Error, ValueError):
            return None
        secret = self._ring.record_secret(key_id)
        if secret is None:
            return None
        tag = hashlib.blake2b(text.encode(), key=secret, digest_size=18).hexdigest()
        name = self._keys.issued_code(tag)
        if len(self._recent) >= _RECENT:
            del self._recent[next(iter(self._recent))]
        self._recent[text] = name
        return name

    async def record(self, token: str, claims: PassClaims, now: float) -> None:
        """Put a code just signed on record until it expires. A store that fails only costs
        the code's scans a signature check each, so issuing goes on."""
        key = self.key(token)
        if key is None:  # the signing key's record secret is not loaded: never expected
            log.warning(
                "issued pass code not recorded (no record key): its scans check the signature"
            )
            return
        try:
            await self._kv.set(key, str(claims.person_id), max(1.0, claims.expires - now))
        except Exception as exc:
            log.warning(
                "issued pass code not recorded (%s): its scans check the signature",
                type(exc).__name__,
            )

    def vouches(self, token: str, claims: PassClaims, known: Mapping[str, bytes | None]) -> bool:
        """Whether `known` (entries read from the store) has `token` on record for the person
        it names. An entry not read is no record: the caller then checks the signature."""
        key = self.key(token)
        if key is None:
            return False
        return known.get(key) == str(claims.person_id).encode()
