"""The feed token file: created private, refused when readable by others, validated, rotated atomically."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.secret_token import (
    MIN_LENGTH,
    TokenFileError,
    load_or_create_token,
    read_token,
    rotate_token,
)

URLSAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def no_credentials_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_created_with_mode_0600_in_a_private_directory(tmp_path: Path, loose_umask: None) -> None:
    path = tmp_path / "state" / "circleback" / "feed-token"
    token = load_or_create_token(path)
    assert len(token) >= MIN_LENGTH
    assert set(token) <= URLSAFE
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert mode(path.parent.parent) == 0o700
    assert path.read_text() == token + "\n"
    assert [p.name for p in path.parent.iterdir()] == ["feed-token"]  # no temp file left behind


def test_existing_token_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "feed-token"
    first = load_or_create_token(path)
    assert load_or_create_token(path) == first
    assert read_token(path) == first


def test_existing_directory_mode_is_left_alone(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    load_or_create_token(directory / "feed-token")
    assert mode(directory) == 0o755


def test_mode_is_exact_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o277)  # would turn a plain open(..., 0o600) into 0o400
    try:
        path = tmp_path / "feed-token"
        load_or_create_token(path)
        rotate_token(path)
    finally:
        os.umask(old)
    assert mode(path) == 0o600


def test_tokens_are_random(tmp_path: Path) -> None:
    tokens = {load_or_create_token(tmp_path / f"t{i}") for i in range(20)}
    assert len(tokens) == 20


@pytest.mark.parametrize("bad_mode", [0o644, 0o640, 0o604, 0o660, 0o620])
def test_refuses_a_token_file_others_can_access(tmp_path: Path, bad_mode: int) -> None:
    path = tmp_path / "feed-token"
    token = load_or_create_token(path)
    os.chmod(path, bad_mode)
    for call in (load_or_create_token, read_token):
        with pytest.raises(TokenFileError) as info:
            call(path)
        message = str(info.value)
        assert str(path) in message
        assert f"chmod 600 {path}" in message
        assert token not in message
    assert path.read_text() == token + "\n"  # refused, not silently replaced


def test_rotate_replaces_atomically_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "feed-token"
    old = load_or_create_token(path)
    old_inode = path.stat().st_ino
    new = rotate_token(path)
    assert new != old
    assert read_token(path) == new
    assert mode(path) == 0o600
    assert path.stat().st_ino != old_inode  # replaced by rename, never rewritten in place
    assert [p.name for p in tmp_path.iterdir()] == ["feed-token"]


def test_rotate_creates_when_missing(tmp_path: Path) -> None:
    path = tmp_path / "new" / "feed-token"
    token = rotate_token(path)
    assert read_token(path) == token
    assert mode(path.parent) == 0o700


def test_concurrent_creators_agree_on_one_token(tmp_path: Path) -> None:
    path = tmp_path / "feed-token"
    results: list[str] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        results.append(load_or_create_token(path))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    assert read_token(path) == results[0]


def write_private(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    os.chmod(path, 0o600)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"\n", "empty"),
        (b"short-token", "11 characters long, at least 43"),
        (b"a" * 42 + b"\n", "42 characters long"),
        (b"a" * 40 + b"/+=" + b"b" * 10, "letters, digits, '-' and '_'"),
        (b"a" * 30 + b" " + b"b" * 30, "letters, digits, '-' and '_'"),
        ("ä".encode() * 30, "non-ASCII"),
        (b"a" * 600, "longer than 512"),
    ],
)
def test_read_token_validates_without_echoing_the_content(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "feed-token"
    write_private(path, content)
    with pytest.raises(TokenFileError) as info:
        read_token(path)
    message = str(info.value)
    assert expected in message
    assert str(path) in message
    if len(content.strip()) > 3:
        assert content.strip().decode("utf-8", "replace")[:20] not in message


def test_read_token_accepts_surrounding_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "feed-token"
    token = "A1_-" * 11
    write_private(path, f"  {token}\r\n".encode())
    assert read_token(path) == token


def test_read_token_missing_and_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_token(tmp_path / "absent")
    with pytest.raises(TokenFileError, match="not a regular file"):
        read_token(tmp_path)


def test_systemd_credential_is_read_as_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    path = creds / "feed-token"
    token = "Z9" * 25
    path.write_text(token + "\n")
    os.chmod(path, 0o440)  # systemd's mode for credentials; group bits are its business, not ours
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert load_or_create_token(path) == token
    assert read_token(path) == token
    with pytest.raises(TokenFileError, match="LoadCredential"):
        rotate_token(path)
    with pytest.raises(TokenFileError, match="no such credential"):
        load_or_create_token(creds / "other")
    assert [p.name for p in creds.iterdir()] == ["feed-token"]


def test_credential_directory_does_not_excuse_other_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    path = tmp_path / "state" / "feed-token"
    load_or_create_token(path)
    os.chmod(path, 0o644)
    with pytest.raises(TokenFileError, match="chmod 600"):
        read_token(path)
