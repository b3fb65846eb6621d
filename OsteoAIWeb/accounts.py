"""Reviewer accounts from a YAML file, passwords hashed with scrypt, and signed login cookies.

The accounts file::

    reviewers:
      alice: "scrypt$16384$8$1$<salt hex>$<hash hex>"   # osteoai web --hash-password

Plain-text passwords are refused. A login cookie is ``user|expiry|hmac``, signed with a secret drawn at
server start (a restart logs everyone out).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from pathlib import Path

from OsteoAIBaseLib.errors import InputError

NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
N, R, P = 2**14, 8, 1


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=32)
    return f"scrypt${N}${R}${P}${salt.hex()}${digest.hex()}"


def verify_password(stored: str, password: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=len(digest) // 2
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


def load_accounts(path: str | Path | None) -> dict[str, str]:
    """``{name: hash}``; an absent path means no reviewer can log in (the upload page still works)."""
    if not path:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise InputError(f"cannot read the accounts file: {type(e).__name__}") from None
    reviewers = data.get("reviewers") if isinstance(data, dict) else None
    if not isinstance(reviewers, dict):
        raise InputError("the accounts file needs a 'reviewers:' mapping of name: scrypt hash")
    for name, h in reviewers.items():
        if not NAME_RE.match(str(name)):
            raise InputError(f"reviewer name {str(name)[:64]!r} may only hold letters, digits, '.', '_' and '-'")
        if not str(h).startswith("scrypt$"):
            raise InputError(f"reviewer {name}: the password must be a scrypt hash (osteoai web --hash-password)")
    return {str(k): str(v) for k, v in reviewers.items()}


class Sessions:
    def __init__(self, accounts: dict[str, str], hours: float = 12.0):
        self.accounts = accounts
        self.secret = secrets.token_bytes(32)
        self.seconds = hours * 3600

    def login(self, name: str, password: str) -> str | None:
        """A cookie value for a correct name and password, else None (same time either way)."""
        stored = self.accounts.get(name, hash_password("x", b"0" * 16))
        ok = verify_password(stored, password) and name in self.accounts
        return self._sign(name, time.time() + self.seconds) if ok else None

    def _sign(self, name: str, expiry: float) -> str:
        msg = f"{name}|{int(expiry)}"
        return msg + "|" + hmac.new(self.secret, msg.encode(), "sha256").hexdigest()

    def user(self, cookie: str | None) -> str | None:
        try:
            name, expiry, mac = (cookie or "").split("|")
        except ValueError:
            return None
        good = hmac.new(self.secret, f"{name}|{expiry}".encode(), "sha256").hexdigest()
        if not hmac.compare_digest(good, mac) or float(expiry) < time.time() or name not in self.accounts:
            return None
        return name
