"""Passwords out of everything effnet shows or writes: storage URLs in messages, run records, logs."""

from __future__ import annotations

import re

_CREDENTIALS = re.compile(r"(^|://|[\s'\"(])([^:/@\s'\"]*:)(?!//)[^\s'\"]*@")


def redact_url(text: str) -> str:
    """The text with the password of any URL in it (user:password@host) replaced by ***.
    Everything from the user name's colon to the last @ goes."""
    return _CREDENTIALS.sub(r"\1\2***@", text)
