"""UIDs of the outputs derived from the source instances and the software version: screening the same
series twice gives the same UIDs, so a resend after a crash replaces instead of duplicating."""

from __future__ import annotations

import hashlib

from pydicom.uid import generate_uid


def key_for(sop_instance_uids: list[str], version: str) -> str:
    h = hashlib.sha256(version.encode())
    for u in sorted(sop_instance_uids):
        h.update(u.encode())
    return h.hexdigest()


def uid(key: str, *parts) -> str:
    return generate_uid(entropy_srcs=[key, *map(str, parts)])
