"""`circleback init`: a commented starter plan and config, never overwriting without --force."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from connectors.atomic import write_atomic
from daemon.config import default_config_path
from daemon.errors import BadInput


def write_starter(directory: Path | None, *, force: bool = False) -> list[Path]:
    target = directory or default_config_path().parent
    files = {"plan.yaml": "plan.yaml", "config.toml": "config.toml"}
    paths = {name: target / name for name in files}
    existing = [p for p in paths.values() if p.exists()]
    if existing and not force:
        raise BadInput(f"{', '.join(map(str, existing))} already exist(s); use --force to overwrite")
    target.mkdir(parents=True, exist_ok=True)
    templates = resources.files("daemon") / "templates"
    for name, template in files.items():
        write_atomic(paths[name], templates.joinpath(template).read_bytes())
    return list(paths.values())
