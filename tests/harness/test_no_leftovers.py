"""No process started by the fixtures outlives the test run, even when tests fail."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

INNER_TEST = textwrap.dedent(
    """
    import json, os, pathlib

    def test_fails_while_the_control_plane_runs(control_plane):
        pathlib.Path(os.environ["PIDS_FILE"]).write_text(json.dumps(control_plane.pids))
        assert control_plane.get_json("/readyz") == "ok"
        assert False, "this inner test fails on purpose"
    """
)

INNER_HANGING_TEST = textwrap.dedent(
    """
    import json, os, pathlib, time

    def test_hangs_until_interrupted(control_plane):
        pathlib.Path(os.environ["PIDS_FILE"]).write_text(json.dumps(control_plane.pids))
        time.sleep(120)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has not reaped it yet.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _write_suite(tmp_path: Path, body: str) -> Path:
    (tmp_path / "conftest.py").write_text(
        'pytest_plugins = ["certauto_core.testing.pytest_plugin"]\n'
    )
    (tmp_path / "test_inner.py").write_text(body)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    return tmp_path


async def _pytest(suite: Path, pids_file: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        str(suite),
        cwd=suite,
        env=dict(os.environ, PIDS_FILE=str(pids_file)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def _wait_for_file(path: Path, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while not path.exists() or not path.read_text():
            await asyncio.sleep(0.1)


@pytest.mark.timeout(180)
async def test_a_failing_run_leaves_no_process(tmp_path: Path) -> None:
    (tmp_path / "suite").mkdir()
    suite = _write_suite(tmp_path / "suite", INNER_TEST)
    pids_file = tmp_path / "pids.json"
    run = await _pytest(suite, pids_file)
    output, _ = await run.communicate()
    assert run.returncode == 1, output.decode()
    assert b"fails on purpose" in output
    pids = [int(pid) for pid in pids_file.read_text().strip("[]").split(",")]
    assert len(pids) == 2
    assert [pid for pid in pids if _alive(pid)] == []


@pytest.mark.timeout(180)
async def test_ctrl_c_leaves_no_process(tmp_path: Path) -> None:
    (tmp_path / "suite").mkdir()
    suite = _write_suite(tmp_path / "suite", INNER_HANGING_TEST)
    pids_file = tmp_path / "pids.json"
    run = await _pytest(suite, pids_file)
    await _wait_for_file(pids_file)
    pids = [int(pid) for pid in pids_file.read_text().strip("[]").split(",")]
    assert all(_alive(pid) for pid in pids)
    run.send_signal(signal.SIGINT)
    output, _ = await asyncio.wait_for(run.communicate(), timeout=60)
    assert b"KeyboardInterrupt" in output
    assert [pid for pid in pids if _alive(pid)] == []


@pytest.mark.timeout(180)
async def test_a_killed_run_leaves_no_process(tmp_path: Path) -> None:
    """Even SIGKILL, which runs no teardown: the children die with their parent."""
    (tmp_path / "suite").mkdir()
    suite = _write_suite(tmp_path / "suite", INNER_HANGING_TEST)
    pids_file = tmp_path / "pids.json"
    run = await _pytest(suite, pids_file)
    await _wait_for_file(pids_file)
    pids = [int(pid) for pid in pids_file.read_text().strip("[]").split(",")]
    run.kill()
    await run.wait()
    async with asyncio.timeout(15):
        while any(_alive(pid) for pid in pids):
            await asyncio.sleep(0.1)
