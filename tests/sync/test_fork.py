"""Fork safety with a real os.fork: the default runtime is recreated in the child; an
explicit runtime from the parent raises a clear error there."""

from __future__ import annotations

import subprocess
import sys
import textwrap

FORK_SCRIPT = """
    import os, sys
    from commandbus_sync import RuntimeClosedError, SyncRuntime
    from commandbus_sync.runtime import get_default_runtime

    async def pid():
        return os.getpid()

    explicit = SyncRuntime()
    parent_default = get_default_runtime()
    assert explicit.run(pid) == os.getpid() == parent_default.run(pid)

    child = os.fork()
    if child == 0:
        code = 1
        try:
            default = get_default_runtime()
            assert default is not parent_default, "default runtime not recreated"
            assert default.run(pid) == os.getpid()
            try:
                explicit.run(pid)
            except RuntimeClosedError as exc:
                message = str(exc)
                assert "fork" in message and "post_fork" in message, message
            else:
                raise AssertionError("explicit parent runtime worked in the child")
            explicit.shutdown()  # a no-op in the child, never a hang
            default.shutdown()
            code = 0
        except BaseException as exc:
            print("child:", repr(exc), file=sys.stderr, flush=True)
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "child failed"
    assert explicit.run(pid) == os.getpid()  # the parent's runtimes are untouched
    assert parent_default.run(pid) == os.getpid()
    explicit.shutdown()
    print("ok")
"""


def test_default_runtime_is_recreated_in_a_forked_child_and_explicit_one_refuses() -> None:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FORK_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
