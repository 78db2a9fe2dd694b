"""Run the fake stand-alone: `python -m tests.fake_google --port N` or `python tests/fake_google --port N`.

It prints its URL, then one line per user created with `--user`: the email and a refresh token, which is
what an authorized-user token file needs (with `token_uri` = URL + "token").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Started as a directory (`python tests/fake_google`): make the package importable by name.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from fake_google.server import FakeGoogle
else:
    from .server import FakeGoogle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fake_google", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (the default) picks a free port")
    parser.add_argument("--user", action="append", default=[], help="create this user (repeatable)")
    parser.add_argument(
        "--users-file", type=Path, help="create the users listed in this file, one email a line (quietly)"
    )
    parser.add_argument(
        "--service-account",
        action="append",
        default=[],
        help="a service account (client_email) with domain-wide delegation (repeatable)",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every HTTP request")
    args = parser.parse_args(argv)
    fake = FakeGoogle(host=args.host, port=args.port)
    fake.latency = args.latency_ms / 1000
    for account in args.service_account:
        fake.add_service_account(account)
    if args.users_file is not None:
        for line in args.users_file.read_text(encoding="utf-8").split():
            fake.add_user(line.strip())
    print(fake.url, flush=True)
    for user in args.user:
        token = fake.add_user(user)
        print(json.dumps({"user": user, "refresh_token": token, "token_uri": fake.token_uri}), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        fake.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
