"""Password hashes, the credentials file, loopback detection and Basic auth."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from fl_runtime.dashboard.auth import (
    Authenticator,
    hash_password,
    is_loopback,
    load_credentials,
    verify_password,
)
from fl_runtime.errors import ConfigError

# Written by passlib's pbkdf2_sha256 (what Ansible's password_hash('pbkdf2_sha256') uses).
PASSLIB_HASH = (
    "$pbkdf2-sha256$1000$FqKUEkKIEaL0nrNWCmHs3Q$ZZeFX2NV7JtEYBR0I/iCkKtYOXxjcqWqchuyVCVoP9g"
)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_hash_round_trip_and_wrong_password() -> None:
    encoded = hash_password("correct horse", iterations=2000)

    assert encoded.startswith("pbkdf2_sha256$2000$")
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct hors", encoded)


def test_passlib_hashes_verify() -> None:
    assert verify_password("s3cret pass", PASSLIB_HASH)
    assert not verify_password("s3cret", PASSLIB_HASH)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "plain",
        "pbkdf2_sha256$10$c2FsdA$aGFzaA",
        "pbkdf2_sha256$x$c2FsdA$aGFzaA",
        "$pbkdf2-sha256$1000$!!$??",
    ],
)
def test_malformed_hashes_never_verify(bad: str) -> None:
    assert not verify_password("anything", bad)


def test_credentials_file(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text(
        f"# managed by Ansible\n\nops:{hash_password('pw', iterations=2000)}\n"
        f"viewer:{PASSLIB_HASH}\n"
    )

    users = load_credentials(path)

    assert sorted(users) == ["ops", "viewer"]


@pytest.mark.parametrize("text", ["ops:not-a-hash\n", "# only a comment\n", "no-colon\n"])
def test_bad_credentials_files_are_config_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "users"
    path.write_text(text)

    with pytest.raises(ConfigError):
        load_credentials(path)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("dashboard.example", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_authenticator_accepts_only_good_credentials() -> None:
    auth = Authenticator({"ops": hash_password("pw", iterations=2000)})

    assert auth.user(_basic("ops", "pw")) == "ops"
    assert auth.user(_basic("ops", "pw")) == "ops"  # cached path
    assert auth.user(_basic("ops", "nope")) is None
    assert auth.user(_basic("eve", "pw")) is None
    assert auth.user(None) is None
    assert auth.user("Bearer abc") is None
    assert auth.user("Basic %%%") is None
