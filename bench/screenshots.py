"""Screenshots of the console's main pages, taken by the browser test.

    python bench/screenshots.py [--out docs/images]

Runs tests/web/test_browser.py (headless Chromium; see docs/console.md) with
COMMANDBUS_SCREENSHOTS set: it saves overview, troubleshooting, confirm, command, commands
and workers PNGs as it goes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"))
    args = parser.parse_args()
    env = {**os.environ, "COMMANDBUS_SCREENSHOTS": str(Path(args.out).resolve())}
    test = "tests/web/test_browser.py"
    status = subprocess.call(
        [sys.executable, "-m", "pytest", test, "-p", "no:randomly", "-q", "-rs"],
        cwd=ROOT,
        env=env,
    )
    if status == 0:
        print(f"screenshots in {args.out}: " + ", ".join(sorted(os.listdir(args.out))))
    return status


if __name__ == "__main__":
    sys.exit(main())
