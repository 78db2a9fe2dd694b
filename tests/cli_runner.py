"""Run the real `circleback` command as a subprocess in a private XDG home, as a person would."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest


def home_with_plan(root: Path, plan: Path) -> Path:
    """A private XDG home under `root` with `plan` at its default place, so commands run with no --plan, as
    a person's would."""
    for sub in ("data", "state"):
        (root / sub).mkdir()
    (root / "config" / "circleback").mkdir(parents=True)
    shutil.copy(plan, root / "config" / "circleback" / "plan.yaml")
    return root


def xdg_env(home: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_STATE_HOME": str(home / "state"),
    }
    return {k: v for k, v in env.items() if not k.startswith("CIRCLEBACK_")}


def run_cli(
    home: Path, *args: str, now: datetime | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    when = ["--now", now.isoformat()] if now is not None else []
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args, *when],
        env=xdg_env(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{args}: exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_in_process(home: Path, *args: str, now: datetime | None = None) -> Result:
    """The same `circleback` command, in this process: the real argument parsing, store and files, minus
    the interpreter start-up. The environment and working directory are those of a private XDG home, and
    are put back afterwards."""
    from daemon.cli import main

    when = ["--now", now.isoformat()] if now is not None else []
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), Path.cwd()
    os.environ.clear()
    os.environ.update(xdg_env(home))
    os.chdir(home)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([*args, *when])
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return Result(code, out.getvalue(), err.getvalue())


class InProcess:
    """`daemon.cli.main` called in this process, in a private XDG home, as the subprocess would run it.

    Calling it returns (exit status, stdout, stderr); main's SystemExit (bad input, failures, --version)
    becomes the status.
    """

    def __init__(
        self, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        for name, value in xdg_env(home).items():
            if name.startswith("XDG_"):
                monkeypatch.setenv(name, value)
        for name in [n for n in os.environ if n.startswith("CIRCLEBACK_")]:
            monkeypatch.delenv(name)
        monkeypatch.chdir(home)
        self._capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        from daemon.cli import main

        self._capsys.readouterr()
        try:
            status = main(list(args))
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        out, err = self._capsys.readouterr()
        return status, out, err
