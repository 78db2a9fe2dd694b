"""The deployment files in deploy/: systemd units, the container image, compose, launchd.

The units are checked by systemd itself (`systemd-analyze verify` and `security --offline`), and the
system unit's environment is used to start the real service under the kernel's write-xor-execute lock
(PR_SET_MDWE, what MemoryDenyWriteExecute= asks for) with a credentials directory and a notify socket,
as systemd would. Docker cannot build here (client only), so the Dockerfile and compose file are checked
for the properties the README promises, and the image's HEALTHCHECK command is run against live servers.
"""

from __future__ import annotations

import http.server
import json
import os
import plistlib
import re
import resource
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from daemon.config import load_settings
from daemon.web import FD_RESERVE, HttpLimits

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
SYSTEM_UNIT = DEPLOY / "systemd" / "system" / "circleback.service"
USER_UNIT = DEPLOY / "systemd" / "user" / "circleback.service"
ENV_EXAMPLE = DEPLOY / "systemd" / "system" / "circleback.env.example"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DOCKERIGNORE = DEPLOY / "docker" / "Dockerfile.dockerignore"
COMPOSE = DEPLOY / "docker" / "compose.yaml"
PLIST = DEPLOY / "launchd" / "com.circleback.agent.plist"
README = DEPLOY.parent / "README.md"

SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
SYSTEM_EXEC = "/opt/circleback/venv/bin/circleback"
USER_EXEC = "%h/.local/share/circleback/venv/bin/circleback"
MAX_EXPOSURE = 2.0  # systemd-analyze's 0-10 scale; the unit scores about 1.1 with systemd 252
SERVICE_START_TIMEOUT_S = 30.0

PR_SET_MDWE = 65
PR_GET_MDWE = 66
PR_MDWE_REFUSE_EXEC_GAIN = 1


# ---------------------------------------------------------------------------------------- unit files


def parse_unit(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; systemd allows a key to repeat, so this is not a dict."""
    entries: list[tuple[str, str, str]] = []
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        entries.append((section, key.strip(), value.strip()))
    return entries


def values(entries: list[tuple[str, str, str]], section: str, key: str) -> list[str]:
    return [v for s, k, v in entries if s == section and k == key]


def one(entries: list[tuple[str, str, str]], section: str, key: str) -> str:
    found = values(entries, section, key)
    assert len(found) == 1, f"[{section}] {key}= should be set exactly once, found {found}"
    return found[0]


def environment(entries: list[tuple[str, str, str]], specifiers: Mapping[str, str]) -> dict[str, str]:
    """The unit's Environment= assignments with the given specifiers expanded."""
    env: dict[str, str] = {}
    for value in values(entries, "Service", "Environment"):
        for assignment in shlex.split(value):
            name, _, setting = assignment.partition("=")
            env[name] = expand(setting, specifiers)
    return env


def expand(value: str, specifiers: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        letter = match.group(1)
        if letter == "%":
            return "%"
        assert letter in specifiers, f"specifier %{letter} in {value!r} is not covered by this test"
        return specifiers[letter]

    return re.sub(r"%(.)", replace, value)


def fake_executable(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "circleback"
    path.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def with_exec(unit_text: str, documented: str, replacement: Path) -> str:
    """The unit with its ExecStart program swapped for `replacement` (verify insists the program exists)."""
    pattern = re.compile(rf"^ExecStart={re.escape(documented)}(?= |$)", re.MULTILINE)
    rewritten, count = pattern.subn(f"ExecStart={replacement}", unit_text)
    assert count == 1, f"ExecStart={documented} not found exactly once"
    return rewritten


def verify(unit: Path, *, user: bool = False, env: Mapping[str, str] | None = None) -> str:
    """Run `systemd-analyze verify`; return its complaints ('' when the unit is clean).

    --man=no and --generators=no keep it offline: no man pages, no generators, no running manager.
    Unknown keys and bad values are only warnings (exit 0), so any output counts as a complaint.
    """
    scope = ["--user"] if user else ["--system"]
    result = subprocess.run(
        [SYSTEMD_ANALYZE, *scope, "verify", "--man=no", "--generators=no", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {}), "SYSTEMD_LOG_COLOR": "0"},
        check=False,
    )
    complaints = (result.stdout + result.stderr).strip()
    if result.returncode != 0 and not complaints:
        complaints = f"exit status {result.returncode}"
    return complaints


def user_manager_env(home: Path) -> dict[str, str]:
    """A HOME holding the documented venv path, and a runtime dir the user manager insists on."""
    runtime = home.parent / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    return {"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime), "XDG_CONFIG_HOME": str(home / ".config")}


def test_systemd_analyze_is_here() -> None:
    result = subprocess.run([SYSTEMD_ANALYZE, "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("systemd ")


def test_system_unit_verifies_clean(tmp_path: Path) -> None:
    unit_text = SYSTEM_UNIT.read_text(encoding="utf-8")
    copy = tmp_path / "circleback.service"
    copy.write_text(with_exec(unit_text, SYSTEM_EXEC, fake_executable(tmp_path / "bin")), encoding="utf-8")
    assert verify(copy) == ""


def test_user_unit_verifies_clean_as_written(tmp_path: Path) -> None:
    # %h is the user's home: with HOME pointing at a tree that holds the documented venv path, the file is
    # verified exactly as shipped, ExecStart included.
    home = tmp_path / "home"
    fake_executable(home / ".local/share/circleback/venv/bin")
    assert verify(USER_UNIT, user=True, env=user_manager_env(home)) == ""


def test_user_unit_execstart_is_checked(tmp_path: Path) -> None:
    # The same check with no venv under HOME must complain, or the test above proves nothing.
    home = tmp_path / "home"
    home.mkdir()
    assert "not executable" in verify(USER_UNIT, user=True, env=user_manager_env(home))


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ("WatchdogSec=60s", "WatchdogSecs=60s", "Unknown key"),
        ("ProtectSystem=strict", "ProtectSystem=sometimes", "Failed to parse protect system value"),
        ("Type=notify", "Type=notified", "Failed to parse service type"),
    ],
)
def test_verify_reports_a_broken_system_unit(tmp_path: Path, old: str, new: str, complaint: str) -> None:
    unit_text = with_exec(SYSTEM_UNIT.read_text(encoding="utf-8"), SYSTEM_EXEC, fake_executable(tmp_path))
    assert old in unit_text
    copy = tmp_path / "circleback.service"
    copy.write_text(unit_text.replace(old, new), encoding="utf-8")
    assert complaint in verify(copy)


def security_review(unit: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", *extra, str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
        check=False,
    )


def test_system_unit_security_exposure_is_low(tmp_path: Path) -> None:
    copy = tmp_path / "circleback.service"
    copy.write_text(
        with_exec(SYSTEM_UNIT.read_text(encoding="utf-8"), SYSTEM_EXEC, fake_executable(tmp_path / "bin")),
        encoding="utf-8",
    )
    review = security_review(copy, f"--threshold={int(MAX_EXPOSURE * 10)}")
    assert review.returncode == 0, review.stdout[-2000:] + review.stderr
    overall = re.search(r"Overall exposure level for circleback\.service: (\d+\.\d)", review.stdout)
    assert overall, review.stdout[-500:]
    assert float(overall.group(1)) <= MAX_EXPOSURE

    table = json.loads(security_review(copy, "--json=short").stdout)
    by_name = {row["name"]: row["set"] for row in table}
    for name in [
        "User=/DynamicUser=",
        "ProtectSystem=",
        "ProtectHome=",
        "PrivateTmp=",
        "PrivateDevices=",
        "NoNewPrivileges=",
        "ProtectKernelTunables=",
        "ProtectKernelModules=",
        "ProtectKernelLogs=",
        "ProtectControlGroups=",
        "RestrictNamespaces=~user",
        "LockPersonality=",
        "MemoryDenyWriteExecute=",
        "SystemCallArchitectures=",
        "SystemCallFilter=~@privileged",
        "CapabilityBoundingSet=~CAP_SYS_ADMIN",
        "RestrictAddressFamilies=~AF_PACKET",
        "UMask=",
        "NotifyAccess=",
    ]:
        assert by_name.get(name) is True, f"{name} is not satisfied"


def test_security_threshold_rejects_an_unhardened_unit(tmp_path: Path) -> None:
    # The same threshold on a bare unit must fail, so the check above can.
    bare = tmp_path / "circleback.service"
    bare.write_text(f"[Service]\nExecStart={fake_executable(tmp_path / 'bin')} run\n", encoding="utf-8")
    assert security_review(bare, f"--threshold={int(MAX_EXPOSURE * 10)}").returncode != 0


def test_system_unit_has_the_promised_settings() -> None:
    unit = parse_unit(SYSTEM_UNIT.read_text(encoding="utf-8"))
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "Restart": "on-failure",
        "DynamicUser": "yes",
        "StateDirectory": "circleback",
        "ConfigurationDirectory": "circleback",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
        "UMask": "0077",
    }
    for key, value in expected.items():
        assert one(unit, "Service", key) == value, key
    assert one(unit, "Service", "ExecStart") == f"{SYSTEM_EXEC} run"
    assert set(one(unit, "Service", "RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "@system-service" in values(unit, "Service", "SystemCallFilter")
    assert values(unit, "Service", "LoadCredential") == ["feed-token:/etc/circleback/feed-token"]
    for key in ("WatchdogSec", "TimeoutStopSec", "RestartSec"):
        assert timespan_seconds(one(unit, "Service", key)) > 0, key
    env = environment(unit, {"S": "/var/lib", "E": "/etc", "C": "/var/cache", "d": "/run/credentials/x"})
    assert env["CIRCLEBACK_STATE_DIR"] == "/var/lib/circleback"
    assert env["CIRCLEBACK_CONFIG"] == "/etc/circleback/config.toml"
    assert env["CIRCLEBACK_FEED_TOKEN_FILE"] == "/run/credentials/x/feed-token"
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_user_unit_has_the_promised_settings() -> None:
    unit = parse_unit(USER_UNIT.read_text(encoding="utf-8"))
    assert one(unit, "Service", "ExecStart") == f"{USER_EXEC} run"
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "Restart") == "on-failure"
    assert timespan_seconds(one(unit, "Service", "WatchdogSec")) > 0
    assert timespan_seconds(one(unit, "Service", "RestartSec")) > 0
    assert one(unit, "Install", "WantedBy") == "default.target"
    # These need the system manager and would stop the unit from starting (or reading the plan in ~).
    for key in ("DynamicUser", "User", "ProtectSystem", "ProtectHome", "PrivateTmp", "LoadCredential"):
        assert not values(unit, "Service", key), f"{key}= does not belong in a user unit"


def descriptor_limit(text: str) -> tuple[int, int]:
    """LimitNOFILE= as (soft, hard): one number sets both, "soft:hard" each (systemd.exec(5))."""
    soft, _, hard = text.partition(":")
    return int(soft), int(hard or soft)


@pytest.mark.parametrize("path", [SYSTEM_UNIT, USER_UNIT], ids=["system", "user"])
def test_units_set_a_descriptor_limit_that_fits_the_http_connection_cap(path: Path) -> None:
    # Without LimitNOFILE= the limit is whatever the manager's default is; a trial under 256 ran out of
    # descriptors. The server caps its connections below the limit, and the unit's limit must leave the
    # full default cap plus the reserve.
    soft, hard = descriptor_limit(one(parse_unit(path.read_text(encoding="utf-8")), "Service", "LimitNOFILE"))
    assert soft <= hard
    assert soft >= HttpLimits().max_connections + FD_RESERVE
    assert soft <= 4096, "a small, known number: descriptor use is bounded by design"


def test_launchd_raises_its_256_descriptor_default() -> None:
    with PLIST.open("rb") as f:
        plist = plistlib.load(f)
    assert plist["SoftResourceLimits"]["NumberOfFiles"] >= HttpLimits().max_connections + FD_RESERVE


def timespan_seconds(text: str) -> float:
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "timespan", text], capture_output=True, text=True, check=True, timeout=30
    )
    found = re.search(r"μs:\s*(\d+)", result.stdout)
    assert found, result.stdout
    return int(found.group(1)) / 1e6


# ------------------------------------------------------------------ the units' environment, for real


def test_system_unit_environment_lands_in_systemds_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Everything the config file leaves unset (plan, database) must follow the unit's XDG variables into
    # the directories systemd creates, not the dynamic user's home.
    specifiers = {
        "E": str(tmp_path / "etc"),
        "S": str(tmp_path / "var/lib"),
        "C": str(tmp_path / "var/cache"),
        "d": str(tmp_path / "credentials"),
    }
    env = environment(parse_unit(SYSTEM_UNIT.read_text(encoding="utf-8")), specifiers)
    config = tmp_path / "etc/circleback/config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("", encoding="utf-8")
    isolate_environment(monkeypatch, env)

    settings = load_settings()

    state = tmp_path / "var/lib/circleback"
    assert settings.config_file == config
    assert settings.plan == tmp_path / "etc/circleback/plan.yaml"
    assert settings.state_dir == state
    assert settings.database_url == f"sqlite:///{state / 'circleback.db'}"
    assert settings.feed_path == state / "circleback.ics"
    assert settings.feed_token_file == tmp_path / "credentials/feed-token"


def isolate_environment(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> None:
    for name in list(os.environ):
        if name.startswith(("CIRCLEBACK_", "XDG_", "CREDENTIALS_DIRECTORY")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", "/nonexistent")
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@dataclass
class NotifyListener:
    """The datagram socket systemd listens on for a Type=notify service."""

    path: Path
    sock: socket.socket = field(init=False)
    messages: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))

    def wait_for(self, field_line: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while field_line not in self.fields():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(min(remaining, 0.5))
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        return True

    def fields(self) -> list[str]:
        return [line for message in self.messages for line in message.splitlines()]


# Under systemd, MemoryDenyWriteExecute= is a seccomp filter refusing writable+executable mappings; the
# kernel's PR_SET_MDWE (Linux 6.3+) refuses the same, survives execve and cannot be undone, so the whole
# interpreter start-up, every compiled extension and the running service are held to it.
MDWE_LAUNCHER = f"""
import ctypes, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:
    sys.exit("PR_SET_MDWE failed: " + os.strerror(ctypes.get_errno()) + " (needs Linux 6.3 or later)")
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except PermissionError:
    pass
else:
    sys.exit("PR_SET_MDWE is set but a writable+executable mapping was still allowed")
os.umask(int(sys.argv[1], 8))
entry = "import sys; from daemon.cli import main; sys.exit(main())"
os.execv(sys.executable, [sys.executable, "-c", entry, *sys.argv[2:]])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # A Unix socket path must fit in 108 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="cb-") as name:
        yield Path(name)


def test_service_runs_under_the_system_units_environment_and_mdwe(short_dir: Path) -> None:
    """Start `circleback run` the way the system unit does: its Environment=, a read-only credential for
    the feed token, UMask=, a notify socket with a watchdog, and no writable+executable memory."""
    from daemon.starter import write_starter

    unit = parse_unit(SYSTEM_UNIT.read_text(encoding="utf-8"))
    root = short_dir
    credentials = root / "credentials"
    credentials.mkdir(mode=0o700)
    token = secrets.token_urlsafe(32)
    (credentials / "feed-token").write_text(token + "\n", encoding="ascii")
    (credentials / "feed-token").chmod(0o400)
    specifiers = {
        "E": str(root / "etc"),
        "S": str(root / "var/lib"),
        "C": str(root / "cache"),
        "d": str(credentials),
    }
    write_starter(root / "etc/circleback")
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/nonexistent",
        "PYTHONPATH": str(REPO),
        **environment(unit, specifiers),
        "CREDENTIALS_DIRECTORY": str(credentials),
        "NOTIFY_SOCKET": str(root / "notify"),
        "WATCHDOG_USEC": str(int(timespan_seconds(one(unit, "Service", "WatchdogSec")) * 1e6)),
        "CIRCLEBACK_HTTP_PORT": str(port),
    }
    listener = NotifyListener(root / "notify")
    arguments = shlex.split(one(unit, "Service", "ExecStart"))[1:]
    nofile = descriptor_limit(one(unit, "Service", "LimitNOFILE"))
    process = subprocess.Popen(
        [sys.executable, "-c", MDWE_LAUNCHER, one(unit, "Service", "UMask"), *arguments],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile),
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready = listener.wait_for("READY=1", SERVICE_START_TIMEOUT_S)
        assert ready, f"no READY=1; exit {process.poll()}; notify: {listener.messages}"
        assert "WATCHDOG=1" in listener.fields() or listener.wait_for("WATCHDOG=1", 15)

        healthcheck = run_healthcheck(port)
        assert healthcheck.returncode == 0, healthcheck.stderr

        status, body = wait_for_feed(f"http://127.0.0.1:{port}/feed/{token}.ics", timeout=15)
        assert status == 200
        assert body.startswith(b"BEGIN:VCALENDAR")

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert listener.wait_for("STOPPING=1", 1)
    finally:
        if process.poll() is None:
            process.kill()
        output, _ = process.communicate(timeout=15)
        listener.sock.close()
    assert token not in output, "the feed token was logged"
    state = root / "var/lib/circleback"
    assert (state / "circleback.db").is_file(), output
    # Everything, the feed file included (it names people), must honour UMask=.
    loose = [p.name for p in state.iterdir() if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert not loose, f"readable by others despite UMask=: {loose}"
    assert stat.S_IMODE(state.stat().st_mode) & 0o077 == 0


def wait_for_feed(url: str, timeout: float) -> tuple[int, bytes]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            # Until the first cycle has rendered the feed there is nothing to serve yet.
            if time.monotonic() > deadline:
                return exc.code, b""
        time.sleep(0.2)


# -------------------------------------------------------------------------------------- Dockerfile


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def dockerfile_lines(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comment lines dropped, as BuildKit does."""
    lines: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue
        if not stripped and not current:
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, args = current.partition(" ")
        lines.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continuation"
    return lines


def dockerfile_stages(text: str) -> list[Stage]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, args in dockerfile_lines(text):
        if keyword == "ARG" and not stages:
            name, _, default = args.partition("=")
            global_args[name] = default
        elif keyword == "FROM":
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m.group(1) or m.group(2)], args)
            parts = image.split()
            stage_name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(image=parts[0], name=stage_name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


def docker_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for assignment in shlex.split(args):
            name, _, value = assignment.partition("=")
            env[name] = value
    return env


def assert_pinned(image: str) -> None:
    assert image.count(":") == 1 or "@sha256:" in image, f"{image}: no tag"
    _repository, _, tag = image.partition("@")[0].partition(":")
    assert tag and tag != "latest", f"{image}: not pinned"
    # A full version (3.11.13, 16.10) rather than a moving major tag.
    assert re.match(r"\d+\.\d+", tag), f"{image}: pin a full version, not {tag!r}"


def test_dockerfile_is_multi_stage_pinned_and_non_root() -> None:
    stages = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))
    assert len(stages) >= 2
    for stage in stages:
        assert_pinned(stage.image)
    builder, runtime = stages[0], stages[-1]
    assert builder.name
    assert any(f"--from={builder.name}" in args for args in runtime.all("COPY")), (
        "runtime copies no build output"
    )
    user = runtime.all("USER")
    assert user, "the runtime stage runs as root"
    uid = user[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user[-1]}: use a fixed non-root UID"


def test_dockerfile_entrypoint_stop_and_volume() -> None:
    runtime = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))[-1]
    assert json.loads(runtime.all("ENTRYPOINT")[-1]) == ["circleback"]
    assert json.loads(runtime.all("CMD")[-1]) == ["run"]
    assert runtime.all("STOPSIGNAL") == ["SIGTERM"]
    assert "/var/lib/circleback" in json.loads(runtime.all("VOLUME")[-1])
    env = docker_env(runtime)
    assert env["CIRCLEBACK_HTTP_HOST"] == "0.0.0.0"
    assert runtime.all("EXPOSE") == [env["CIRCLEBACK_HTTP_PORT"]]


def test_dockerfile_copies_only_what_exists_and_is_not_ignored() -> None:
    ignored = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    included = {line[1:].strip().rstrip("/") for line in ignored if line.startswith("!")}
    assert "*" in ignored, "the ignore file should start from nothing and re-include what the build needs"
    for stage in dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8")):
        for args in stage.all("COPY"):
            if args.startswith("--from="):
                continue
            *sources, _destination = args.split()
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
                assert source.rstrip("/") in included, f"COPY {source}: excluded from the build context"


def healthcheck_command() -> list[str]:
    runtime = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))[-1]
    (spec,) = runtime.all("HEALTHCHECK")
    options, _, command = spec.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv: list[str] = json.loads(command)
    assert argv[0] == "python", "slim images have no curl; the venv's python does the request"
    assert "http://127.0.0.1:" in argv[-1] and "/healthz" in argv[-1]
    return argv


def run_healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    argv = healthcheck_command()
    return subprocess.run(
        [sys.executable, *argv[1:]],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ.get("PATH", ""), "CIRCLEBACK_HTTP_PORT": str(port)},
        check=False,
    )


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_command_follows_healthz(status: int, healthy: bool) -> None:
    handler = type("Handler", (_Health,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = run_healthcheck(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
    assert (result.returncode == 0) is healthy, result.stderr


def test_healthcheck_command_fails_when_nothing_listens() -> None:
    assert run_healthcheck(free_port()).returncode != 0


def test_container_environment_puts_defaults_in_the_volume_and_config_mount(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))[-1]
    compose = load_compose()
    service = compose["services"]["circleback"]

    def rooted(env: Mapping[str, str]) -> dict[str, str]:
        # The settings-relevant variables, with absolute paths inside the container moved under tmp_path.
        return {
            k: f"{tmp_path}{v}" if v.startswith("/") else v
            for k, v in env.items()
            if k.startswith(("CIRCLEBACK_", "XDG_"))
        }

    volume = json.loads(runtime.all("VOLUME")[-1])[0]
    mounts = {target: source for source, target in map(split_volume, service["volumes"])}
    isolate_environment(monkeypatch, rooted(docker_env(runtime)))
    alone = load_settings()
    assert alone.state_dir == tmp_path / volume.lstrip("/")
    assert alone.database_url == f"sqlite:///{tmp_path / volume.lstrip('/') / 'circleback.db'}"
    config_mount = next(target for target, source in mounts.items() if "CONFIG_DIR" in source)
    assert alone.plan == tmp_path / config_mount.lstrip("/") / "plan.yaml"
    assert (alone.http_host, alone.http_port) == ("0.0.0.0", 8765)

    isolate_environment(monkeypatch, rooted({**docker_env(runtime), **service["environment"]}))
    composed = load_settings()
    assert composed.database_url.startswith("postgresql+psycopg://")
    assert composed.feed_token_file == tmp_path / "run/secrets/feed-token"
    assert mounts[volume] in compose["volumes"], "the image's VOLUME should be a named compose volume"


# ---------------------------------------------------------------------------------------- compose


def split_volume(spec: str) -> tuple[str, str]:
    """(source, target) of a short-syntax volume; the source may be a ${VAR:-default} with colons."""
    source_end = spec.index("}") + 1 if spec.startswith("${") else spec.index(":")
    source, rest = spec[:source_end], spec[source_end:].lstrip(":")
    return source, rest.split(":")[0]


def load_compose() -> dict[str, Any]:
    data: dict[str, Any] = YAML(typ="safe").load(COMPOSE.read_text(encoding="utf-8"))
    return data


def test_compose_binds_loopback_and_waits_for_a_healthy_database() -> None:
    compose = load_compose()
    service = compose["services"]["circleback"]
    postgres = compose["services"]["postgres"]
    assert service["ports"] == ["127.0.0.1:8765:8765"]
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert postgres["healthcheck"]["test"][0] == "CMD"
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert "ports" not in postgres, "PostgreSQL needs no published port"
    image = postgres["image"]
    assert image.startswith("postgres:16.")
    assert_pinned(image)
    build = service["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_compose_keeps_secrets_in_files() -> None:
    compose = load_compose()
    service = compose["services"]["circleback"]
    env = service["environment"]
    url = env["CIRCLEBACK_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://")
    userinfo = url.split("://", 1)[1].split("@", 1)[0]
    assert ":" not in userinfo, "no password in the database URL"
    declared = compose["secrets"]
    for name in service["secrets"]:
        assert name in declared and "file" in declared[name]
    assert env["CIRCLEBACK_FEED_TOKEN_FILE"] == "/run/secrets/feed-token"
    assert "feed-token" in service["secrets"]
    assert env["PGPASSFILE"] == "/run/secrets/pgpass" and "pgpass" in service["secrets"]
    postgres = compose["services"]["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db-password"
    assert "POSTGRES_PASSWORD" not in postgres["environment"]
    named = set(compose["volumes"])
    assert any(split_volume(v)[0] in named for v in service["volumes"]), "state needs a named volume"


# ---------------------------------------------------------------------------------------- launchd


def test_launchd_plist_keys() -> None:
    with PLIST.open("rb") as f:
        plist = plistlib.load(f)
    assert plist["Label"] == PLIST.stem
    assert plist["ProgramArguments"] == ["__HOME__/.local/share/circleback/venv/bin/circleback", "run"]
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ProcessType"] == "Background"
    assert isinstance(plist["ThrottleInterval"], int) and plist["ThrottleInterval"] >= 10
    assert isinstance(plist["EnvironmentVariables"], dict)
    for key in ("StandardOutPath", "StandardErrorPath"):
        assert plist[key].startswith("__HOME__/Library/Logs/circleback/")
    assert plist["Umask"] == 0o077


def test_launchd_plist_after_the_documented_substitution() -> None:
    # The README installs it with sed "s#__HOME__#$HOME#g"; afterwards every path must be absolute.
    text = PLIST.read_text(encoding="utf-8").replace("__HOME__", "/Users/alice")
    plist = plistlib.loads(text.encode("utf-8"))

    def strings(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)

    for value in strings(plist):
        assert "~" not in value and "$" not in value, value
    for key in ("StandardOutPath", "StandardErrorPath", "WorkingDirectory"):
        assert plist[key].startswith("/Users/alice")
    assert Path(plist["ProgramArguments"][0]).is_absolute()


# -------------------------------------------------------------------------------- docs and variables


def test_every_circleback_variable_in_deploy_is_one_the_config_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no config file of the machine's user
    compose_only = {"CIRCLEBACK_CONFIG_DIR", "CIRCLEBACK_SECRETS_DIR"}  # compose interpolation
    samples = {
        "CIRCLEBACK_HTTP_PORT": "8765",
        "CIRCLEBACK_LOG_FORMAT": "json",
        "CIRCLEBACK_LOG_LEVEL": "debug",
    }
    seen: set[str] = set()
    for path in [SYSTEM_UNIT, USER_UNIT, ENV_EXAMPLE, DOCKERFILE, COMPOSE, PLIST, README]:
        seen |= set(re.findall(r"\bCIRCLEBACK_[A-Z_]+\b", path.read_text(encoding="utf-8")))
    assert "CIRCLEBACK_FEED_TOKEN_FILE" in seen
    for name in sorted(seen - compose_only - {"CIRCLEBACK_CONFIG"}):
        settings = load_settings(environ={name: samples.get(name, "/x")})
        assert f"environment ({name})" in settings.origin.values(), f"{name} is not read by daemon.config"
    config = tmp_path / "elsewhere.toml"
    config.write_text("", encoding="utf-8")
    assert load_settings(environ={"CIRCLEBACK_CONFIG": str(config)}).config_file == config


def test_readme_section_matches_the_files() -> None:
    readme = README.read_text(encoding="utf-8")
    assert "\n## Run it as a service\n" in readme
    user_exec = USER_EXEC.replace("%h", "~")
    for needle in [
        user_exec,
        "systemctl --user enable --now circleback",
        "systemctl --user status circleback",
        "journalctl --user -u circleback",
        "~/.config/systemd/user/circleback.service",
        SYSTEM_EXEC,
        "/etc/systemd/system/circleback.service",
        "sudo systemctl enable --now circleback",
        "systemctl status circleback",
        "journalctl -u circleback",
        "/etc/circleback/feed-token",
        "docker build -f deploy/docker/Dockerfile",
        "docker compose up -d --build",
        "docker compose ps",
        "docker compose logs -f circleback",
        'sed "s#__HOME__#$HOME#g"',
        "~/Library/LaunchAgents/com.circleback.agent.plist",
        "launchctl bootstrap gui/$(id -u)",
        "launchctl print gui/$(id -u)/com.circleback.agent",
        "~/Library/Logs/circleback",
    ]:
        assert needle in readme, f"README.md does not mention {needle!r}"
    for subsection in [
        "### systemd user unit",
        "### Hardened system unit",
        "### Docker and compose",
        "### launchd",
    ]:
        assert subsection in readme


ORG_UNIT = DEPLOY / "systemd" / "system" / "circleback-org@.service"


def test_organisation_template_unit_verifies_clean_for_an_instance(tmp_path: Path) -> None:
    unit_text = ORG_UNIT.read_text(encoding="utf-8")
    assert "ExecStart=/opt/circleback/venv/bin/circleback run --org\n" in unit_text
    copy = tmp_path / "circleback-org@8766.service"
    rewritten = with_exec(unit_text, SYSTEM_EXEC, fake_executable(tmp_path / "bin"))
    copy.write_text(rewritten, encoding="utf-8")
    assert verify(copy) == ""
    broken = tmp_path / "circleback-org@8767.service"
    broken.write_text(rewritten.replace("Type=exec", "Type=exec-ish"), encoding="utf-8")
    assert "Failed to parse service type" in verify(broken)


def test_organisation_replicas_share_one_user_and_state_and_listen_on_their_instance_port() -> None:
    unit_text = ORG_UNIT.read_text(encoding="utf-8")
    for line in (
        "DynamicUser=yes",
        "User=circleback-org",
        "StateDirectory=circleback-org",
        "Environment=CIRCLEBACK_HTTP_PORT=%i",
    ):
        assert f"\n{line}\n" in unit_text
    # No sd_notify in organisation mode: Type=notify would never become ready.
    assert "Type=notify" not in unit_text and "WatchdogSec" not in unit_text


def test_organisation_compose_runs_three_replicas_on_one_database() -> None:
    from ruamel.yaml import YAML

    compose = YAML(typ="safe").load((DEPLOY / "docker" / "compose.org.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    replicas = {name: s for name, s in services.items() if name.startswith("replica-")}
    assert len(replicas) == 3
    published = set()
    for replica in replicas.values():
        assert replica["command"] == ["run", "--org"]
        assert replica["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        assert replica["environment"]["CIRCLEBACK_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "circleback-state:/var/lib/circleback" in replica["volumes"]
        (port,) = replica["ports"]
        assert port.startswith("127.0.0.1:")
        published.add(port)
    assert len(published) == 3
    assert "postgres" in services and "ports" not in services["postgres"]
