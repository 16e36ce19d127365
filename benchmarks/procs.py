"""Processes: CPU and memory from ``/proc``, and the operator run as its own process."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

import aiohttp

from benchmarks.metrics import OperatorMetrics

_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG: Final = 1
KIB: Final = 1024
MIB: Final = 1024 * 1024


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process (its reaped children not included)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name may hold spaces: the fields after it start past the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy since boot (``/proc/stat``)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0]
    except (OSError, IndexError):
        return 0.0
    ticks = [int(value) for value in first.split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    # guest time is already counted in user time
    return (sum(ticks[:8]) - idle) / _CLOCK_TICKS


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak RSS) of one process, in KiB."""
    out: dict[str, int] = {}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


@dataclass
class CpuMeter:
    """CPU seconds of named processes between :meth:`start` and :meth:`stop`."""

    pids: Mapping[str, int]
    started: float = 0.0
    _before: dict[str, float] = field(default_factory=dict)
    _machine_before: float = 0.0

    def start(self) -> CpuMeter:
        self.started = time.monotonic()
        self._before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._machine_before = machine_busy_seconds()
        return self

    def stop(self) -> dict[str, float]:
        """CPU seconds each process used over ``wall`` seconds.

        ``cores_busy`` is their total over the wall time; ``other_processes`` is the CPU
        the rest of the machine used meanwhile (other people's test runs on a shared
        machine show here, and make the run's figures less trustworthy).
        """
        wall = time.monotonic() - self.started
        used = {
            name: round(cpu_seconds(pid) - self._before.get(name, 0.0), 2)
            for name, pid in self.pids.items()
        }
        out: dict[str, float] = {"wall": round(wall, 2), **used}
        machine = machine_busy_seconds() - self._machine_before
        out["other_processes"] = round(max(0.0, machine - sum(used.values())), 2)
        if wall > 0:
            out["cores_busy"] = round(sum(used.values()) / wall, 2)
            out["other_cores_busy"] = round(out["other_processes"] / wall, 2)
        return out


class RssSampler:
    """Samples one process's RSS every ``interval`` seconds while running."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None
        self._origin = time.monotonic()

    def start(self, origin: float | None = None) -> RssSampler:
        self._origin = origin if origin is not None else time.monotonic()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            rss = memory_kib(self.pid).get("VmRSS")
            if rss is None:
                return
            self.samples.append((round(time.monotonic() - self._origin, 2), rss))
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def peak_kib(self) -> int:
        return max((rss for _, rss in self.samples), default=0)

    def series_mib(self, points: int = 40) -> list[tuple[float, float]]:
        """At most ``points`` samples, evenly picked, as (seconds, MiB)."""
        step = max(1, len(self.samples) // points)
        picked = self.samples[::step]
        if self.samples and picked[-1] != self.samples[-1]:
            picked.append(self.samples[-1])
        return [(t, round(kib / KIB, 1)) for t, kib in picked]


def operator_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of an operator process: this one's, with bytecode caching on.

    A ``PYTHONDONTWRITEBYTECODE`` in the environment (this machine sets one) would make
    every start compile ~2,000 modules from source; an installed operator image runs
    from compiled bytecode, so the benchmarks let the first start write it.
    """
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL it when the benchmark driver dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class OperatorProcess:
    """``certauto run`` as a separate process: its own interpreter, its own share of the cores."""

    def __init__(
        self,
        *,
        kubeconfig: Path,
        metrics_port: int,
        workers: int,
        resync_interval: str,
        log_path: Path,
        extra_args: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "certauto_core.cli",
            "run",
            f"--kubeconfig={kubeconfig}",
            "--no-leader-elect",
            f"--metrics-address=127.0.0.1:{metrics_port}",
            f"--workers={workers}",
            f"--resync-interval={resync_interval}",
            "--log-format=json",
            *extra_args,
        ]
        self.extra_env = dict(extra_env or {})
        self.metrics_url = f"http://127.0.0.1:{metrics_port}"
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self.ready_at = 0.0
        self._log: IO[bytes] | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        self._log = self.log_path.open("ab")
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self.started_at = time.monotonic()
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            preexec_fn=_die_with_parent,
            env=operator_environment(self.extra_env),
        )

    async def wait_ready(self, timeout: float = 300.0) -> float:
        """Wait for ``/readyz`` (caches synced); return seconds since :meth:`start`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                assert self._http is not None
                async with self._http.get(self.metrics_url + "/readyz") as response:
                    if response.status == 200:
                        self.ready_at = time.monotonic()
                        return self.ready_at - self.started_at
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the operator was not ready in {timeout}s; see {self.log_path}")

    async def metrics(self) -> OperatorMetrics:
        self._check_alive()
        assert self._http is not None
        async with self._http.get(self.metrics_url + "/metrics") as response:
            response.raise_for_status()
            return OperatorMetrics.parse(await response.text())

    def memory_kib(self) -> dict[str, int]:
        return memory_kib(self.pid)

    def _check_alive(self) -> None:
        if self.process is not None and self.process.returncode is not None:
            raise RuntimeError(
                f"the operator exited with {self.process.returncode}; see {self.log_path}"
            )

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._log is not None:
            self._log.close()
            self._log = None
