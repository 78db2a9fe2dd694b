"""One organisation-mode worker process for tests/test_org.py: `circleback run --org`'s own code, with a
cycle period shorter than the settings allow (they start at one minute).

usage: python tests/org_worker.py CONFIG PERIOD_SECONDS WORKER_NAME
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

from daemon.config import load_settings
from daemon.org import run_org

if __name__ == "__main__":
    config, period, name = sys.argv[1:4]
    settings = load_settings(Path(config))
    sys.exit(run_org(settings, period=timedelta(seconds=float(period)), worker_name=name))
