"""Run the real `circleback` command in a private XDG home, as a person would: in this process (the
suite's way: `run_in_process`, `in_process`) or, where the process itself matters, as a subprocess
(`run_cli`)."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import NamedTuple


def private_home(root: Path) -> Path:
    """`root` made into a private XDG home: empty config, data and state directories."""
    for sub in ("config", "data", "state"):
        (root / sub).mkdir(exist_ok=True)
    return root


def home_with_plan(root: Path, plan: Path) -> Path:
    """A private XDG home under `root` with `plan` at its default place, so commands run with no --plan, as
    a person's would."""
    private_home(root)
    (root / "config" / "circleback").mkdir(parents=True)
    shutil.copy(plan, root / "config" / "circleback" / "plan.yaml")
    return root


def xdg_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment pointed at `home`, without any CIRCLEBACK_ setting except `extra`."""
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_STATE_HOME": str(home / "state"),
    }
    return {k: v for k, v in env.items() if not k.startswith("CIRCLEBACK_")} | dict(extra or {})


class Result(NamedTuple):
    """What a command did; unpacks as (status, stdout, stderr)."""

    returncode: int
    stdout: str
    stderr: str


def _checked(args: Sequence[str], result: Result) -> Result:
    if result.returncode != 0:
        raise AssertionError(
            f"{list(args)}: exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def _when(now: datetime | None) -> list[str]:
    return ["--now", now.isoformat()] if now is not None else []


def installed_command() -> str:
    """The `circleback` console script of the environment running the tests (`pip install -e .` made it)."""
    command = Path(sys.executable).parent / "circleback"
    if not command.is_file():
        raise AssertionError(f"{command} is missing: install circleback into this environment (make test)")
    return str(command)


def run_cli(
    home: Path,
    *args: str,
    now: datetime | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> Result:
    """`circleback` as a real process, the installed command (its launcher, circleback_cli.py, checks for a
    shadowing `daemon` package first): for the few tests where the process itself matters (exit statuses
    through the interpreter, pipes, what gets imported)."""
    proc = subprocess.run(
        [installed_command(), *args, *_when(now)],
        env=xdg_env(home, env),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
    )
    result = Result(proc.returncode, proc.stdout, proc.stderr)
    return _checked(args, result) if check else result


def run_in_process(
    home: Path,
    *args: str,
    now: datetime | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = False,
) -> Result:
    """The same `circleback` command, in this process: the real argument parsing, store and files, minus
    the interpreter start-up (most of a command's time). The environment is that of `home` plus `env`, the
    working directory is `home`; both are put back afterwards. main's SystemExit (bad input, --version)
    becomes the status."""
    from daemon.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), Path.cwd()
    os.environ.clear()
    os.environ.update(xdg_env(home, env))
    os.chdir(home)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([*args, *_when(now)])
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    result = Result(code, out.getvalue(), err.getvalue())
    return _checked(args, result) if check else result


Cli = Callable[..., Result]


def in_process(home: Path, *, check: bool = False) -> Cli:
    """`run_in_process` bound to `home`: `cli("sync", "--plan", ...)`."""
    return functools.partial(run_in_process, home, check=check)
