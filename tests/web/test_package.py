"""The console's distribution: importable, versioned, htmx vendored with its notice."""

from __future__ import annotations

from importlib import resources

import commandbus_web


def test_package_imports_and_ships_htmx() -> None:
    assert commandbus_web.__version__ == "0.1.0"
    htmx = resources.files("commandbus_web").joinpath("static", "htmx.min.js").read_text()
    assert "htmx" in htmx
