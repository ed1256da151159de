"""The console's environment variables, and warnings for ones that look misspelt.

A misspelt variable (``COMMANDBUS_WEB_USERNAME`` for ``COMMANDBUS_WEB_USER``) would
otherwise be ignored in silence, and the console start without the sign-in its operator
meant to configure.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping

__all__ = ["KNOWN_VARIABLES", "environment_warnings"]

KNOWN_VARIABLES = (
    "COMMANDBUS_WEB_USER",
    "COMMANDBUS_WEB_PASSWORD",
    "COMMANDBUS_WEB_PASSWORD_HASH",
    "COMMANDBUS_WEB_VIEWER",
    "COMMANDBUS_WEB_VIEWER_PASSWORD",
    "COMMANDBUS_WEB_VIEWER_PASSWORD_HASH",
    "COMMANDBUS_WEB_SECRET",
)
_PREFIX = "COMMANDBUS_WEB"


def environment_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """One message per variable that looks like one of :data:`KNOWN_VARIABLES` but is not."""
    env = os.environ if environ is None else environ
    warnings = []
    for name in sorted(env):
        if name in KNOWN_VARIABLES:
            continue
        upper = name.upper()
        close = difflib.get_close_matches(upper, KNOWN_VARIABLES, n=1, cutoff=0.8)
        if not upper.startswith(_PREFIX) and not close and not _near_prefix(upper):
            continue
        hint = f"did you mean {close[0]}?" if close else f"it reads {', '.join(KNOWN_VARIABLES)}"
        warnings.append(f"the environment variable {name} is not one the console reads: {hint}")
    return warnings


def _near_prefix(upper: str) -> bool:
    """``COMANDBUS_WEB_X``, ``COMMANDBUS-WEB-X``: the prefix with a slip of the finger."""
    head = upper[: len(_PREFIX) + 1].replace("-", "_")
    return difflib.SequenceMatcher(None, head, _PREFIX + "_").ratio() >= 0.85
