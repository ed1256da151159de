"""Every ```python block in README.md and docs/*.md runs, so examples cannot rot.

Each block is a complete script. It runs in a subprocess with ``DATABASE_URL`` pointing at
a fresh database of its own, created and dropped here. Fragments that are not meant to
run use a ```py fence instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _examples() -> Iterator[object]:
    for doc in DOCS:
        for index, match in enumerate(FENCE.finditer(doc.read_text())):
            line = doc.read_text()[: match.start()].count("\n") + 1
            yield pytest.param(match.group(1), id=f"{doc.name}:{line}#{index}")


EXAMPLES = list(_examples())


def test_docs_have_runnable_examples() -> None:
    assert len(EXAMPLES) >= 2, "README quick starts are expected to be runnable examples"


@pytest.mark.parametrize("code", EXAMPLES)
def test_example_runs(code: str, fresh_database: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {**os.environ, "DATABASE_URL": fresh_database}
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, f"example failed:\n{out.stdout}\n{out.stderr}"
