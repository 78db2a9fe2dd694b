"""A service account's key file, as Google's console hands it out: what the fake's token endpoint accepts
for domain-wide delegation (it checks the client email it was told about, not the signature's issuer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def service_account_info(
    client_email: str, *, key_id: str = "k1", token_uri: str = "https://oauth2.googleapis.com/token"
) -> dict[str, Any]:
    """A fresh RSA key in Google's service-account JSON shape."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {
        "type": "service_account",
        "project_id": "project",
        "private_key_id": key_id,
        "private_key": pem.decode(),
        "client_email": client_email,
        "client_id": "1",
        "token_uri": token_uri,
    }


def write_service_account(path: Path, client_email: str, *, key_id: str = "k1") -> Path:
    """The key file at `path`, mode 0600 as circleback requires of secrets."""
    path.write_text(json.dumps(service_account_info(client_email, key_id=key_id)), encoding="utf-8")
    path.chmod(0o600)
    return path
