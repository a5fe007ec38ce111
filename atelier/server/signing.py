"""Signed, expiring asset links: ?expires=UNIX&signature=HMAC-SHA256(secret, "asset id:expires").

A link lets whoever holds it fetch one image until it expires, as OpenAI's image urls do, so a
browser or a chat client can show it without the API key."""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: bytes, asset_id: str, expires: int) -> str:
    return hmac.new(secret, f"{asset_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def signature_matches(secret: bytes, asset_id: str, expires: int, signature: str) -> bool:
    # bytes: compare_digest refuses str with non-ASCII characters, which anyone can put in a link
    return hmac.compare_digest(sign(secret, asset_id, expires).encode(), signature.encode("utf-8", "replace"))
