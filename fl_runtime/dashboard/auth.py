"""Login for a dashboard that listens beyond loopback: HTTP Basic against a password-hash file.

The file (written by Ansible from vault-encrypted variables) holds ``user:hash``
lines; blank lines and ``#`` comments are ignored. Two PBKDF2-SHA256 encodings
are accepted:

* ``pbkdf2_sha256$<iterations>$<salt b64>$<hash b64>``, from :func:`hash_password`
  (``fl dashboard --hash-password``);
* ``$pbkdf2-sha256$<iterations>$<salt ab64>$<hash ab64>``, what Ansible's
  ``password_hash('pbkdf2_sha256')`` filter (passlib) writes.

A verified (user, password) pair is remembered by its keyed digest so a page's
many requests do not each pay for PBKDF2.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from collections import OrderedDict
from pathlib import Path

from fl_runtime.errors import ConfigError

SCHEME = "pbkdf2_sha256"
ITERATIONS = 600_000
MIN_ITERATIONS = 1_000
_CACHE_SIZE = 64


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{SCHEME}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded``; False for any malformed hash."""
    parsed = _parse(encoded)
    if parsed is None:
        return False
    iterations, salt, expected = parsed
    digest = hashlib.pbkdf2_hmac(
        "sha256", password.encode("utf-8"), salt, iterations, len(expected)
    )
    return hmac.compare_digest(digest, expected)


def _parse(encoded: str) -> tuple[int, bytes, bytes] | None:
    parts = encoded.split("$")
    try:
        if len(parts) == 4 and parts[0] == SCHEME:
            iterations, salt, digest = int(parts[1]), _unb64(parts[2]), _unb64(parts[3])
        elif len(parts) == 5 and parts[0] == "" and parts[1] == "pbkdf2-sha256":
            iterations = int(parts[2])
            salt, digest = _unab64(parts[3]), _unab64(parts[4])
        else:
            return None
    except (ValueError, binascii.Error):
        return None
    if iterations < MIN_ITERATIONS or not salt or len(digest) < 16:
        return None
    return iterations, salt, digest


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _unab64(text: str) -> bytes:
    """passlib's "adapted base64": ``.`` instead of ``+``, no padding."""
    return _unb64(text.replace(".", "+"))


def load_credentials(path: Path) -> dict[str, str]:
    """Read ``user:hash`` lines; a malformed line is a :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the dashboard password file: {exc}") from None
    users: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, encoded = line.partition(":")
        if not sep or not user or _parse(encoded) is None:
            raise ConfigError(
                f"{path}:{number}", "expected 'user:pbkdf2_sha256$...' or 'user:$pbkdf2-sha256$...'"
            )
        users[user] = encoded
    if not users:
        raise ConfigError(str(path), "the dashboard password file names no user")
    return users


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; ``0.0.0.0`` and names are not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Checks ``Authorization: Basic`` header values against a credentials mapping."""

    def __init__(self, credentials: dict[str, str]) -> None:
        self._credentials = dict(credentials)
        self._key = secrets.token_bytes(32)
        self._verified: OrderedDict[bytes, None] = OrderedDict()

    def user(self, authorization: str | None) -> str | None:
        """The authenticated user name, or None."""
        pair = _basic(authorization)
        if pair is None:
            return None
        user, password = pair
        encoded = self._credentials.get(user)
        if encoded is None:
            return None
        token = hmac.digest(self._key, f"{user}\0{password}\0{encoded}".encode(), "sha256")
        if token in self._verified:
            self._verified.move_to_end(token)
            return user
        if not verify_password(password, encoded):
            return None
        self._verified[token] = None
        if len(self._verified) > _CACHE_SIZE:
            self._verified.popitem(last=False)
        return user


def _basic(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None
