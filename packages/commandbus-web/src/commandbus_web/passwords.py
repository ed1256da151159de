"""Password hashes: PBKDF2-SHA256 with a random salt, compared in constant time.

The console never keeps a password: a plain one given at start (``COMMANDBUS_WEB_PASSWORD``)
is hashed at once, with its own salt, like one from ``commandbus web --hash-password``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

__all__ = ["MIN_PASSWORD_LENGTH", "check_password_length", "hash_password", "verifier"]

#: Shorter passwords are refused (NIST SP 800-63B asks for at least 8; a shared operator
#: password deserves more).
MIN_PASSWORD_LENGTH = 12
_PBKDF2 = "pbkdf2_sha256"
_ITERATIONS = 200_000
#: Bounds of the iteration count read from a hash (below, it is too weak to accept;
#: above, one check would hold a thread for minutes).
_MIN_ITERATIONS, _MAX_ITERATIONS = 1000, 10_000_000
#: Longest password checked: PBKDF2 hashes a long one first, but there is no reason to
#: let a visitor make it read megabytes.
MAX_PASSWORD_LENGTH = 1024


def check_password_length(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(
            f"the password must have at least {MIN_PASSWORD_LENGTH} characters, "
            f"it has {len(password)}"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")
    return password


def hash_password(password: str, *, iterations: int = _ITERATIONS) -> str:
    """A ``pbkdf2_sha256$iterations$salt$hash`` string for ``COMMANDBUS_WEB_PASSWORD_HASH``;
    ``ValueError`` for a password shorter than :data:`MIN_PASSWORD_LENGTH`."""
    check_password_length(password)
    if not _MIN_ITERATIONS <= iterations <= _MAX_ITERATIONS:
        raise ValueError(f"iterations must be {_MIN_ITERATIONS}..{_MAX_ITERATIONS}")
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), iterations)
    return f"{_PBKDF2}${iterations}${salt}${digest.hex()}"


def verifier(password_hash: str) -> Callable[[str], bool]:
    """``check(password) -> bool`` for a hash from :func:`hash_password` (slow by design:
    call it off the event loop)."""
    parts = password_hash.strip().split("$")
    try:
        if len(parts) != 4 or parts[0] != _PBKDF2:
            raise ValueError(parts[0])
        iterations, salt, expected = int(parts[1]), bytes.fromhex(parts[2]), bytes.fromhex(parts[3])
        if not _MIN_ITERATIONS <= iterations <= _MAX_ITERATIONS or len(expected) != 32:
            raise ValueError(parts[1])
    except ValueError:
        raise ValueError(
            "the password hash must be 'pbkdf2_sha256$iterations$salt$hash', as printed by "
            "commandbus web --hash-password (an unsalted sha256$... hash is no longer accepted)"
        ) from None

    def check(password: str) -> bool:
        too_long = len(password) > MAX_PASSWORD_LENGTH
        got = hashlib.pbkdf2_hmac(
            "sha256", password[:MAX_PASSWORD_LENGTH].encode(), salt, iterations
        )
        return hmac.compare_digest(got, expected) and not too_long

    return check
