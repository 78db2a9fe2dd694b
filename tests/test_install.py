"""Installing beside other tools: circleback's `daemon` package may meet python-daemon's.

The `circleback` command refuses to run someone else's `daemon` (a real fake package first on PYTHONPATH,
in a real subprocess), and a fresh clone installs into a fresh virtual environment with pip and runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = "import sys, circleback_cli; sys.exit(circleback_cli.main())"


def fake_python_daemon(where: Path) -> Path:
    """A package named `daemon` as python-daemon installs it; importing it leaves a mark."""
    package = where / "daemon"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        '"""python-daemon, as far as the import system can tell."""\n'
        "import os, pathlib\n"
        "pathlib.Path(os.environ['FAKE_DAEMON_MARK']).write_text('imported')\n",
        encoding="utf-8",
    )
    return package


def run(command: list[str], *, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CIRCLEBACK_", "PYTHON"))}
    return {**env, **extra}


def assert_refused(proc: subprocess.CompletedProcess[str], fake: Path, mark: Path) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert f"another package named `daemon` is in the way: {fake.resolve()}" in proc.stderr
    assert "pipx install ." in proc.stderr and "uv tool install ." in proc.stderr
    assert not mark.exists(), "the other package must not even be imported"


def test_a_shadowing_daemon_package_is_refused_with_the_fix(tmp_path: Path) -> None:
    fake = fake_python_daemon(tmp_path / "elsewhere")
    mark = tmp_path / "mark"
    env = clean_env(PYTHONPATH=f"{tmp_path / 'elsewhere'}{os.pathsep}{ROOT}", FAKE_DAEMON_MARK=str(mark))
    proc = run([sys.executable, "-c", LAUNCH, "--version"], env=env, cwd=tmp_path)
    assert_refused(proc, fake, mark)


def test_without_a_shadow_the_launcher_runs_the_command(tmp_path: Path) -> None:
    env = clean_env(PYTHONPATH=str(ROOT))
    proc = run([sys.executable, "-c", LAUNCH, "--version"], env=env, cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.startswith("circleback ")


@pytest.mark.slow
def test_a_fresh_clone_installs_into_its_own_environment_and_runs(tmp_path: Path) -> None:
    """`git clone`, `python -m venv`, `pip install .`, `circleback --version`, as the README says.

    pip runs with this machine's own configuration (index, find-links, certificates: `pip config list`);
    the clone holds what is committed, so a file left out of git fails here."""
    clone, venv = tmp_path / "circleback", tmp_path / "venv"
    env = clean_env()
    cloned = run(["git", "clone", "--quiet", str(ROOT), str(clone)], env=env, cwd=tmp_path)
    assert cloned.returncode == 0, cloned.stderr
    made = run([sys.executable, "-m", "venv", str(venv)], env=env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    # --no-compile: byte-compiling every installed library (matplotlib, the Google client) is 40% of the
    # install's time and nothing this test checks; Python compiles what it imports when it runs.
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile", str(clone)]
    installed = run(pip, env=env, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    command = venv / "bin" / "circleback"
    version = run([str(command), "--version"], env=env, cwd=tmp_path)
    assert (version.returncode, version.stderr) == (0, ""), version.stderr
    assert version.stdout.strip() == "circleback 0.1.0"
    # The installed command checks too: python-daemon first on the path is named, with the fix.
    fake = fake_python_daemon(tmp_path / "elsewhere")
    mark = tmp_path / "mark"
    shadowed = clean_env(PYTHONPATH=str(tmp_path / "elsewhere"), FAKE_DAEMON_MARK=str(mark))
    assert_refused(run([str(command), "--version"], env=shadowed, cwd=tmp_path), fake, mark)
