"""SQLite stays single-process: a second `circleback run` on the same database is refused.

The lock is an advisory flock on the database file itself, so it follows the file, not the name it was
opened under: a symlink or a hard link to the same database meets the same lock. flock and the POSIX
record locks SQLite uses do not interact (on local file systems), and the descriptor is held until the
service has closed the database, so SQLite's own locks are never dropped by closing it. A flock dies
with its process, so a killed service never leaves a stale lock behind. The holder's pid is written
next to the real file (`<database>.lock`), for the message only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


class AlreadyRunning(Exception):
    pass


def database_file_for(database_url: str) -> Path | None:
    """The SQLite database file behind `database_url`, with every symlink resolved; None otherwise."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        return None  # the store refuses the URL with a clear message
    database = url.database
    if not url.drivername.startswith("sqlite") or not database or database == ":memory:":
        return None
    if database.startswith("file:") or url.query.get("uri"):
        return None  # an SQLite URI: the store names it as SQLite would, there is no plain file to lock
    return Path(database).resolve()


class ProcessLock:
    def __init__(self, database: Path) -> None:
        self.database = Path(database).resolve()
        self.pid_file = self.database.with_name(self.database.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.database.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Created as the store would create it (0600: it holds contact notes) if it does not exist yet.
        fd = os.open(self.database, os.O_RDONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(
                f"another circleback service (pid {self._holder()}) is already using {self.database}; "
                "SQLite allows one service per database file: stop the other one, or use PostgreSQL"
            ) from None
        self._fd = fd
        with contextlib.suppress(OSError):
            pid = os.open(self.pid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(pid, str(os.getpid()).encode())
            finally:
                os.close(pid)

    def _holder(self) -> str:
        try:
            written = self.pid_file.read_text(errors="replace").strip()
        except OSError:
            written = ""
        return written or flock_holder(self.database) or "unknown"

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def flock_holder(path: Path) -> str | None:
    """The pid holding a flock on `path` according to Linux's /proc/locks (a hard link has no pid file
    of its own next to it); None elsewhere or when nobody does."""
    try:
        st = path.stat()
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 08:01:131090 0 EOF"; blocked waiters carry a "->" marker.
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
            return fields[4]
    return None
