"""The `circleback` command's entry point, kept outside the `daemon` package on purpose.

circleback's service package is called `daemon`, like the popular python-daemon. In an environment that
holds both, whichever comes first on the path wins, and the loser fails in odd ways (an ImportError deep in
a command, or python-daemon's code run as ours). This module is a sibling of our `daemon` in every install
(wheel, editable, source tree), so before importing anything from it, it checks that the `daemon` Python
would import is the one beside it, and otherwise stops with what to do.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path

EXIT_BAD_INSTALL = 2
FIX = (
    "install circleback in an environment of its own, where nothing else provides `daemon`: "
    "from its checkout, `pipx install .` or `uv tool install .`"
)


def expected_daemon() -> Path:
    """The directory of the `daemon` package installed with this module."""
    return Path(__file__).resolve().parent / "daemon"


def found_daemon() -> Path | None:
    """The directory of the `daemon` package Python would import, or None if there is none."""
    spec = find_spec("daemon")
    if spec is None:
        return None
    if spec.origin and spec.origin not in {"namespace", "built-in", "frozen"}:
        return Path(spec.origin).resolve().parent
    locations = list(spec.submodule_search_locations or ())
    return Path(locations[0]).resolve() if locations else None


def shadowing_problem() -> str | None:
    """Why our `daemon` package cannot be used, or None when it is the one Python imports."""
    ours, found = expected_daemon(), found_daemon()
    if found == ours:
        return None
    if found is None:
        return f"circleback: its `daemon` package is missing (expected at {ours}); reinstall circleback"
    return (
        f"circleback: another package named `daemon` is in the way: {found} "
        f"(probably python-daemon) is imported instead of circleback's own at {ours}.\n"
        f"To fix it, {FIX}."
    )


def main(argv: Sequence[str] | None = None) -> int:
    problem = shadowing_problem()
    if problem is not None:
        print(problem, file=sys.stderr)
        return EXIT_BAD_INSTALL
    from daemon.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
