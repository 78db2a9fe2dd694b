"""`circleback init`: a commented starter plan and config. Existing files are kept unless --force."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from connectors.atomic import write_atomic
from daemon.config import default_config_path

STARTER_FILES = ("plan.yaml", "config.toml")


@dataclass(frozen=True)
class StarterResult:
    written: tuple[Path, ...]
    kept: tuple[Path, ...]


def write_starter(directory: Path | None, *, force: bool = False) -> StarterResult:
    target = directory or default_config_path().parent
    # The plan names people and carries notes about them: keep its directory private.
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    templates = resources.files("daemon") / "templates"
    written, kept = [], []
    for name in STARTER_FILES:
        path = target / name
        if path.exists() and not force:
            kept.append(path)
            continue
        write_atomic(path, templates.joinpath(name).read_bytes())
        written.append(path)
    return StarterResult(tuple(written), tuple(kept))
