"""Installation works as the README says (issue #17 item 3, issue #22 item 10).

Builds the wheels with ``hatch build`` as the README's install section does, installs
them with every extra into a fresh virtual environment (their dependencies, psycopg and
friends, come from the index pip is configured with), and runs the README's async and
sync quick starts and ``commandbus web`` there, with the repository out of reach (not the
working directory, not on ``sys.path``). Meanwhile the README's all-extras line from a
clone runs into a second environment. Every ``pip install`` in the docs names this
repository's packages by path or wheel, never by a name the public index would resolve
to somebody else's package.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from test_docs_examples import DOCS, FENCE, ROOT

pytestmark = pytest.mark.slow

README = ROOT / "README.md"
#: Every distribution of the repository, as (project directory, wheel file name).
WHEELS = [
    (ROOT / "packages" / "commandbus-core", "commandbus_core-0.1.0-py3-none-any.whl"),
    (ROOT / "packages" / "commandbus-sync", "commandbus_sync-0.1.0-py3-none-any.whl"),
    (ROOT / "packages" / "commandbus-web", "commandbus_web-0.1.0-py3-none-any.whl"),
    (ROOT / "packages" / "commandbus-django", "commandbus_django-0.1.0-py3-none-any.whl"),
    (ROOT, "commandbus-0.1.0-py3-none-any.whl"),
]
#: The root distribution's extras, and the packages of this repository each one needs.
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
NEEDS = {
    "sync": {"./packages/commandbus-core", "./packages/commandbus-sync"},
    "web": {"./packages/commandbus-core", "./packages/commandbus-web"},
    "prometheus": {"./packages/commandbus-core"},
    "otel": {"./packages/commandbus-core"},
    "django": {
        "./packages/commandbus-core",
        "./packages/commandbus-sync",
        "./packages/commandbus-django",
    },
}
ALL_EXTRAS = ",".join(NEEDS)


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


def install_section() -> str:
    return README.read_text().split("## Install", 1)[1].split("\n## ", 1)[0]


def pip_installs(text: str) -> list[list[str]]:
    """The arguments of every ``pip install`` in ``text`` (shell lines, continuations
    joined, and inline code), without options."""
    commands = []
    joined = text.replace("\\\n", " ")
    for found in re.finditer(r"pip install ([^`\n]+)", joined):
        words = shlex.split(found.group(1).split("#")[0])
        commands.append([w for w in words if not w.startswith("-")])
    return commands


def test_the_readme_has_an_install_section_that_works_as_written() -> None:
    install = install_section()
    assert "not ours" in install  # the public name is somebody else's until published
    for _, wheel in WHEELS:
        assert f"dist/{wheel}" in install
    assert "hatch build -t wheel" in install
    assert set(quick_starts()) == {"Quick start (async)", "Quick start (sync)"}


def test_every_extra_has_a_line_from_a_clone_with_the_packages_it_needs() -> None:
    assert set(EXTRAS) == set(NEEDS)  # a new extra needs its line (and this map) too
    lines = pip_installs(install_section())
    for extra, needed in NEEDS.items():
        own = [args for args in lines if args[-1] == f".[{extra}]"]
        assert own, f"no install line from a clone for [{extra}]"
        assert {a for a in own[0] if a.startswith("./packages/")} == needed, (extra, own)
    everything = [args for args in lines if args[-1] == f".[{ALL_EXTRAS}]"]
    assert everything and set(everything[0][:-1]) == set().union(*NEEDS.values())
    wheels = [args for args in lines if args and args[-1].startswith("dist/commandbus-0.1.0")]
    assert wheels and wheels[0][-1].endswith(f"[{ALL_EXTRAS}]")
    assert {Path(a).name for a in wheels[0]} >= {name for _, name in WHEELS[:-1]}


def test_no_doc_installs_our_names_from_the_public_index() -> None:
    """``pip install "commandbus[web]"`` resolves to an unrelated package on PyPI."""
    for doc in DOCS:
        for args in pip_installs(doc.read_text()):
            for arg in args:
                name = re.split(r"[\[=<>]", arg.strip("'\""))[0]
                assert not re.fullmatch(r"commandbus(-core|-sync|-web|-django)?", name) or (
                    "unrelated" in doc.read_text() and arg == "commandbus"
                ), f"{doc.name}: pip install {' '.join(args)}"


def _venv(path: Path) -> tuple[str, list[str]]:
    """A fresh virtual environment: its python, and the pip command that installs into it
    (the base interpreter's pip when it has one, pip 22.3+'s --python, which spares
    ensurepip's half a minute on a busy machine)."""
    base = getattr(sys, "_base_executable", sys.executable)
    python = str(path / "bin" / "python")
    outside = subprocess.run(
        [base, "-m", "pip", "--python", base, "--version"], check=False, capture_output=True
    )
    if outside.returncode == 0:
        _run([base, "-m", "venv", "--without-pip", str(path)], cwd=path.parent)
        return python, [base, "-m", "pip", "--python", python]
    _run([base, "-m", "venv", str(path)], cwd=path.parent)
    return python, [python, "-m", "pip"]


def _start(args: list[str], *, cwd: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        args,
        cwd=cwd,
        env=_clean_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen[str], timeout: float) -> str:
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"{' '.join(map(str, process.args))} failed:\n{out}"  # type: ignore[arg-type]
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _console_answers(python: str, database_url: str, cwd: Path) -> None:
    """``commandbus web`` of the installed console answers an HTTP request."""
    port = _free_port()
    console = _start(
        [python, "-m", "commandbus", "web", "--dsn", database_url, "--port", str(port)],
        cwd=cwd,
        COMMANDBUS_WEB_USER="",
    )
    try:
        status, deadline = 0, time.monotonic() + 60
        while not status and time.monotonic() < deadline and console.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    status = r.status
            except urllib.error.HTTPError as refused:  # an answer all the same (sign-in)
                status = refused.code
            except OSError:
                time.sleep(0.1)  # polling the port with a deadline, not synchronising
    finally:
        console.terminate()
        output, _ = console.communicate(timeout=15)
    assert status in (200, 401), output
    assert f"commandbus console on http://127.0.0.1:{port}/" in output


def test_wheels_and_a_clone_install_every_extra_and_run_the_quick_starts_and_console(
    tmp_path: Path, fresh_database: str
) -> None:
    hatch = shutil.which("hatch")
    if hatch is None:
        pytest.skip("hatch is not on PATH (pip install hatch): it builds the wheels")
    # From a clone, as the README's all-extras line (run from the clone's root), in the
    # background: it waits on the index most of its time.
    (clone_line,) = [
        args for args in pip_installs(install_section()) if args[-1] == f".[{ALL_EXTRAS}]"
    ]
    from_clone, clone_pip = _venv(tmp_path / "from-clone")
    clone_install = _start([*clone_pip, "install", "-q", *clone_line], cwd=ROOT)

    dist = tmp_path / "dist"
    # As the README: hatch build -t wheel <dist>, in each project; all at once.
    builds = [
        _start([hatch, "build", "-t", "wheel", str(dist / project.name)], cwd=project)
        for project, _ in WHEELS
    ]
    for build in builds:
        _finish(build, timeout=90)
    wheels = [dist / project.name / name for project, name in WHEELS]
    assert all(w.exists() for w in wheels), [str(p) for p in dist.rglob("*.whl")]

    python, pip = _venv(tmp_path / "venv")
    *parts, root = wheels
    _run(
        [*pip, "install", "-q", *map(str, parts), f"{root}[{ALL_EXTRAS}]"],
        cwd=tmp_path,
        timeout=150,
    )
    imports = (
        "import commandbus_sync, commandbus_web, commandbus_django, prometheus_client, "
        "opentelemetry.trace"
    )
    where = _run([python, "-c", f"{imports}; print(commandbus_web.__file__)"], cwd=tmp_path)
    assert where.startswith(str(tmp_path / "venv")), where  # the installed wheel

    for heading, code in quick_starts().items():
        script = tmp_path / f"{heading.split('(')[1].rstrip(')')}.py"
        script.write_text(code)
        out = _run([python, str(script)], cwd=tmp_path, DATABASE_URL=fresh_database)
        assert "COMPLETED" in out or "sent_to" in out, (heading, out)
    _console_answers(python, fresh_database, tmp_path)

    _finish(clone_install, timeout=240)
    where = _run([from_clone, "-c", f"{imports}; print(commandbus_web.__file__)"], cwd=tmp_path)
    assert where.startswith(str(tmp_path / "from-clone")), where  # copied, not the clone
