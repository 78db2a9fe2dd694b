"""`circleback auth google`: the one-time consent that lets circleback write into a Google calendar.

The installed-app flow (google-auth-oauthlib's `run_local_server`) gets an authorized-user token, which is
stored with `Credentials.to_json()`, atomically and mode 0600, under the XDG config directory (or the
configured `token_file`). The connector writes refreshed tokens back the same way. A Workspace service
account with domain-wide delegation (`service_account_file` + `subject`) needs no consent step.
"""

from __future__ import annotations

import json
import webbrowser
from pathlib import Path
from typing import Any

from google.oauth2.credentials import Credentials
from google_auth_oauthlib.flow import InstalledAppFlow

from connectors.google import REAUTH, SCOPES, load_credentials, save_token
from connectors.google_options import GoogleOptions, default_token_file
from daemon.errors import BadInput

__all__ = ["REAUTH", "AuthFailed", "authorize", "credentials_for", "default_token_file"]

PROMPT = "Open this address in a browser and allow circleback to use your calendar:\n{url}"
DONE_PAGE = "circleback may now use your calendar. You can close this tab."


class AuthFailed(Exception):
    """The consent did not complete (refused, timed out, no browser, the token exchange failed)."""


def authorize(
    client_secrets: Path,
    token_file: Path | None = None,
    *,
    open_browser: bool = True,
    host: str = "localhost",
    port: int = 0,
    timeout_seconds: int | None = 600,
) -> Path:
    """Run the consent flow and store the token; returns where it was stored.

    With `open_browser=False` the address is printed instead (for a server reached over an SSH port
    forward: forward `port` and open the address on your own machine)."""
    target = token_file if token_file is not None else default_token_file()
    flow = _flow(client_secrets)
    try:
        creds: Any = flow.run_local_server(
            host=host,
            port=port,
            open_browser=open_browser,
            authorization_prompt_message=PROMPT,
            success_message=DONE_PAGE,
            timeout_seconds=timeout_seconds,
            access_type="offline",
            prompt="consent",  # so Google hands out a refresh token even on a second consent
        )
    except webbrowser.Error as exc:
        raise AuthFailed(f"no browser to open here ({exc}); run it again with --no-browser") from None
    except Exception as exc:  # oauthlib and requests raise many kinds; none of them deserve a traceback
        raise AuthFailed(f"the Google consent did not complete: {exc}") from None
    if not isinstance(creds, Credentials) or not creds.refresh_token:
        raise AuthFailed("Google gave no refresh token; remove circleback's access in your account and retry")
    save_token(target, creds)
    return target


def _flow(client_secrets: Path) -> InstalledAppFlow:
    try:
        config = json.loads(client_secrets.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{client_secrets}: no such client secrets file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadInput(f"{client_secrets}: not a client secrets JSON file ({exc})") from None
    if not isinstance(config, dict) or not ({"installed", "web"} & config.keys()):
        raise BadInput(
            f"{client_secrets}: not an OAuth client file (needs an 'installed' section: create a "
            "'Desktop app' OAuth client in the Google Cloud console and download its JSON)"
        )
    try:
        return InstalledAppFlow.from_client_config(config, SCOPES)
    except ValueError as exc:
        raise BadInput(f"{client_secrets}: {exc}") from None


def credentials_for(options: GoogleOptions, calendar: str = "google") -> Any:
    """The credentials `make_google_calendar` would load itself (service account or token file)."""
    return load_credentials(options, calendar)
