"""The demo end to end, as a newcomer runs it: ``python -m certauto_core.testing.demo``.

The demo runs as a subprocess with a marker in its environment; every process it starts
inherits the marker, so after it exits a scan of ``/proc`` proves none is left, whatever
became of its parent. What each example should have produced is worked out here from
``examples/`` itself (the namespaces a reflector binding lists or selects, the region of
an ACM one, the certificate name of a Key Vault one), not copied from the demo.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

for _plugin in ("certauto_reflector", "certauto_acm", "certauto_akv"):
    pytest.importorskip(_plugin, reason="the demo needs every plugin: uv sync --all-packages")

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
MARKER = "CERTAUTO_DEMO_TEST_RUN"
DEMO_TIMEOUT = 300.0
COLUMNS = ("binding", "ready", "destination", "type", "state", "landed", "checked")

pytestmark = pytest.mark.timeout(DEMO_TIMEOUT + 60)


@dataclass(frozen=True)
class Expected:
    binding: str
    destination: str
    type: str
    landed: re.Pattern[str]


def _documents() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def _selected(selector: Mapping[str, Any], namespaces: Mapping[str, Mapping[str, str]]) -> set[str]:
    assert set(selector) <= {"matchLabels"}, "the test understands matchLabels selectors only"
    wanted = selector.get("matchLabels") or {}
    return {
        name
        for name, labels in namespaces.items()
        if all(labels.get(key) == value for key, value in wanted.items())
    }


def expected_rows() -> list[Expected]:
    """One row per destination of every example binding, with where it must land."""
    documents = _documents()
    namespaces = {
        doc["metadata"]["name"]: doc["metadata"].get("labels") or {}
        for doc in documents
        if doc["kind"] == "Namespace"
    }
    rows: list[Expected] = []
    for doc in documents:
        if doc["kind"] != "CertificateBinding":
            continue
        meta = doc["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        for destination in doc["spec"]["destinations"]:
            config = destination["config"]
            kind = destination["type"]
            if kind == "reflector":
                targets = set(config.get("namespaces") or [])
                targets |= _selected(config.get("namespaceSelector") or {}, namespaces)
                targets.discard(meta["namespace"])
                landed = re.escape("namespaces " + ", ".join(sorted(targets)))
            elif kind == "aws-acm":
                region = re.escape(config["region"])
                landed = rf"arn:aws:acm:{region}:\d{{12}}:certificate/[0-9a-f-]{{36}}"
            elif kind == "azure-key-vault":
                name = re.escape(config["certificateName"])
                landed = rf"certificate {name}, version [0-9a-f]{{32}}"
            else:
                raise AssertionError(f"the test does not know destination type {kind!r}")
            rows.append(Expected(key, destination["name"], kind, re.compile(landed)))
    return rows


def table(output: str) -> dict[tuple[str, str], dict[str, str]]:
    """The demo's closing table, by (binding, destination)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("BINDING  "))
    rows: dict[tuple[str, str], dict[str, str]] = {}
    binding = ready = ""
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == len(COLUMNS) - 2:  # a binding's further destinations
            cells = [binding, ready, *cells]
        row = dict(zip(COLUMNS, cells, strict=True))
        binding, ready = row["binding"], row["ready"]
        rows[(row["binding"], row["destination"])] = row
    return rows


def marked_processes(marker: str) -> list[int]:
    """Live processes (not zombies) whose environment carries ``MARKER=marker``."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in environ.split(b"\0") and state != "Z":
            found.append(int(proc.name))
    return found


async def no_process_left(marker: str, output: str) -> None:
    """Give the kernel a moment to reap, then insist that nothing carries the marker."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while (left := marked_processes(marker)) and loop.time() < deadline:
        await asyncio.sleep(0.2)
    assert not left, f"processes left behind: {left}\n{output}"


async def start_demo(marker: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "certauto_core.testing.demo",
        "--examples",
        str(EXAMPLES),
        *args,
        env={**os.environ, MARKER: marker, "PYTHONUNBUFFERED": "1"},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def stop(process: asyncio.subprocess.Process) -> None:
    """Make sure the demo is gone, whatever happened (SIGTERM, then SIGKILL)."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()


def assert_every_example_landed(output: str) -> None:
    expected = expected_rows()
    assert len({row.binding for row in expected}) >= 3, "examples/ lost a binding"
    rows = table(output)
    for want in expected:
        row = rows.get((want.binding, want.destination))
        assert row is not None, f"no row for {want.binding} {want.destination}:\n{output}"
        assert row["ready"] == "True", row
        assert row["type"] == want.type, row
        assert row["state"] == "Synced", row
        assert want.landed.fullmatch(row["landed"]), (want.landed.pattern, row)
        assert row["checked"].startswith("yes"), row
    bindings = len({row.binding for row in expected})
    assert f"All {bindings} bindings are Ready." in output


async def test_the_demo_reaches_ready_prints_where_each_example_landed_and_cleans_up() -> None:
    marker = uuid.uuid4().hex
    process = await start_demo(marker, "--exit-when-ready")
    try:
        raw, _ = await asyncio.wait_for(process.communicate(), DEMO_TIMEOUT)
    finally:
        await stop(process)
    output = raw.decode()
    print(output)
    assert process.returncode == 0, output
    assert_every_example_landed(output)
    await no_process_left(marker, output)


async def test_ctrl_c_stops_the_running_demo_and_leaves_no_process() -> None:
    marker = uuid.uuid4().hex
    process = await start_demo(marker)
    assert process.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(DEMO_TIMEOUT):
            while not lines or "Press Ctrl-C" not in lines[-1]:
                line = await process.stdout.readline()
                assert line, "the demo ended before it was running:\n" + "".join(lines)
                lines.append(line.decode())
        assert marked_processes(marker), "the scan sees the demo's processes while it runs"
        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), 60)
    finally:
        await stop(process)
    output = "".join(lines) + rest.decode()
    assert process.returncode == 0, output
    assert "Stopping: tearing everything down" in output
    assert_every_example_landed(output)
    await no_process_left(marker, output)
