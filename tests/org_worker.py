"""One organisation-mode worker process for tests/test_org.py: `circleback run --org`'s own code, with a
cycle period shorter than the settings allow (they start at one minute).

usage: python tests/org_worker.py CONFIG PERIOD_SECONDS WORKER_NAME

CIRCLEBACK_BENCH_CONCURRENCY=N runs N jobs at once instead of the shipped default (tests/bench/bench_org.py
uses it to find out what limits one worker).
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

from daemon import org
from daemon.config import load_settings

if __name__ == "__main__":
    config, period, name = sys.argv[1:4]
    settings = load_settings(Path(config))
    if "CIRCLEBACK_BENCH_CONCURRENCY" in os.environ:
        org.CONCURRENCY = int(os.environ["CIRCLEBACK_BENCH_CONCURRENCY"])  # type: ignore[misc]
    sys.exit(org.run_org(settings, period=timedelta(seconds=float(period)), worker_name=name))
