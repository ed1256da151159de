"""Installation works as the README says (issue #17 item 3).

Builds the wheels with ``hatch build`` as the README's install section does, installs
them with ``[sync]`` into a fresh virtual environment (their dependencies, psycopg and
friends, come from the index pip is configured with), and runs the README's async and
sync quick starts there, with the repository out of reach (not the working directory,
not on ``sys.path``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_docs_examples import FENCE, ROOT

pytestmark = pytest.mark.slow

README = ROOT / "README.md"
#: The distributions ``[sync]`` needs, as (project directory, wheel file name).
WHEELS = [
    (ROOT / "packages" / "commandbus-core", "commandbus_core-0.1.0-py3-none-any.whl"),
    (ROOT / "packages" / "commandbus-sync", "commandbus_sync-0.1.0-py3-none-any.whl"),
    (ROOT, "commandbus-0.1.0-py3-none-any.whl"),
]


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what ties it to the test's own virtualenv."""
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "CONDA_PREFIX")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("HATCH_ENV")}
    env.update(extra)
    return env


def _run(args: list[str], *, cwd: Path, timeout: float = 90, **env: str) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=_clean_env(**env), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def quick_starts() -> dict[str, str]:
    """The README's python blocks under the "Quick start (...)" headings."""
    text = README.read_text()
    found: dict[str, str] = {}
    for match in FENCE.finditer(text):
        headings = re.findall(r"^## (.+)$", text[: match.start()], re.MULTILINE)
        if headings and headings[-1].startswith("Quick start"):
            found.setdefault(headings[-1], match.group(1))
    return found


def test_the_readme_has_an_install_section_that_works_as_written() -> None:
    text = README.read_text()
    install = text.split("## Install", 1)[1].split("\n## ", 1)[0]
    assert "not ours" in install  # the public name is somebody else's until published
    for _, wheel in WHEELS:
        assert f"dist/{wheel}" in install
    assert "hatch build -t wheel" in install
    assert set(quick_starts()) == {"Quick start (async)", "Quick start (sync)"}


def test_wheels_install_into_a_fresh_venv_and_run_the_quick_starts(
    tmp_path: Path, fresh_database: str
) -> None:
    hatch = shutil.which("hatch")
    if hatch is None:
        pytest.skip("hatch is not on PATH (pip install hatch): it builds the wheels")
    dist = tmp_path / "dist"
    # As the README: hatch build -t wheel <dist>, in each project; the three at once.
    builds = [
        subprocess.Popen(
            [hatch, "build", "-t", "wheel", str(dist / project.name)],
            cwd=project,
            env=_clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for project, _ in WHEELS
    ]
    for build in builds:
        out, _ = build.communicate(timeout=90)
        assert build.returncode == 0, out
    wheels = [dist / project.name / name for project, name in WHEELS]
    assert all(w.exists() for w in wheels), [str(p) for p in dist.rglob("*.whl")]

    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    python = str(venv / "bin" / "python")
    # A fresh venv; its pip is the base interpreter's when it has one (pip --python, pip
    # 22.3+), which spares ensurepip's half a minute on a busy machine.
    outside = subprocess.run(
        [base, "-m", "pip", "--python", base, "--version"], check=False, capture_output=True
    )
    if outside.returncode == 0:
        _run([base, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
        pip = [base, "-m", "pip", "--python", python]
    else:
        _run([base, "-m", "venv", str(venv)], cwd=tmp_path)
        pip = [python, "-m", "pip"]
    *parts, root = wheels
    _run([*pip, "install", "-q", *map(str, parts), f"{root}[sync]"], cwd=tmp_path, timeout=110)
    where = _run(
        [python, "-c", "import commandbus, commandbus_sync; print(commandbus.__file__)"],
        cwd=tmp_path,
    )
    assert where.startswith(str(venv)), where  # the installed wheel, not the clone

    for heading, code in quick_starts().items():
        script = tmp_path / f"{heading.split('(')[1].rstrip(')')}.py"
        script.write_text(code)
        out = _run([python, str(script)], cwd=tmp_path, DATABASE_URL=fresh_database)
        assert "COMPLETED" in out or "sent_to" in out, (heading, out)
