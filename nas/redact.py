"""Passwords out of everything effnet shows or writes: storage URLs in messages, run records, logs.

A password reaches a storage URL in two places: after the user name (`user:pw@host`, percent-encoded
or not, with quotes or spaces or an `@` in it), and as a query parameter (`?password=pw`, `&passwd=`).
`redact_url` hides both in a whole URL; `redact` hides them in free text, where a URL's end cannot be
told (a password with a space in it), so it also takes the passwords known to be secret
(`url_secrets` of the URLs a command was given) and hides every occurrence of them, as written and
decoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, unquote_plus

HIDDEN = "***"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_SECRET_KEY = re.compile(r"pass|pwd|secret|token", re.IGNORECASE)
_USERINFO = re.compile(r"(^|://|[\s'\"(])([^:/@\s'\"]*:)(?!//)[^\s'\"]*@")
_SECRET_PAIR = re.compile(r"(?i)\b([\w.\-]*(?:pass|pwd|secret|token)[\w.\-]*=)[^&\s'\"]*")


def _split(url: str) -> tuple[str, str | None, str, str, str, str]:
    """A URL as (everything up to `://`, user name or None, password, host and path, `?` or "", query)."""
    match = _SCHEME.search(url)
    head, rest = (url[: match.end()], url[match.end() :]) if match else ("", url)
    user, password = None, ""
    at = rest.rfind("@")
    if at > 0 and not rest.startswith("/") and ":" in rest[:at]:
        user, password = rest[:at].split(":", 1)
        rest = rest[at:]
    where, mark, query = rest.partition("?")
    return head, user, password, where, mark, query


def _query_pairs(query: str) -> list[tuple[str, str | None]]:
    return [(key, value if sep else None) for key, sep, value in (p.partition("=") for p in query.split("&"))]


def redact_url(url: str) -> str:
    """A whole URL as it may be shown: the password after the user name and the value of every query
    parameter named like a password (password, passwd, pwd, sslpassword, secret, token) replaced by ***."""
    head, user, _, where, mark, query = _split(url)
    pairs = (
        [
            key if value is None else f"{key}={HIDDEN if _SECRET_KEY.search(key) else value}"
            for key, value in _query_pairs(query)
        ]
        if mark
        else []
    )
    return head + (f"{user}:{HIDDEN}" if user is not None else "") + where + mark + "&".join(pairs)


def url_secrets(url: str) -> set[str]:
    """The passwords a URL holds, each as written and percent-decoded."""
    _, user, password, _, _, query = _split(url)
    found = {password} if user is not None else set()
    found |= {value for key, value in _query_pairs(query) if value and _SECRET_KEY.search(key)}
    return {form for secret in found for form in (secret, unquote(secret), unquote_plus(secret)) if form}


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Free text with every `user:password@` and `password=value` hidden, and every known secret too."""
    text = _USERINFO.sub(rf"\1\2{HIDDEN}@", text)
    text = _SECRET_PAIR.sub(rf"\1{HIDDEN}", text)
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return text


def argv_secrets(argv: Iterable[str]) -> set[str]:
    """The passwords of every URL on a command line (`--storage URL` and `--storage=URL` alike)."""
    return {secret for arg in argv if _SCHEME.search(arg) for secret in url_secrets(arg)}


def redact_argv(argv: Iterable[str]) -> list[str]:
    """Command-line arguments as they may be recorded: a URL in an argument redacted whole, and its
    passwords hidden wherever else they appear."""
    argv = list(argv)
    secrets = argv_secrets(argv)
    return [redact(redact_url(arg) if _SCHEME.search(arg) else arg, secrets) for arg in argv]
