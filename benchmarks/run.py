"""Run CertAuto's benchmarks against a real local control plane; print a table, save JSON.

    python -m benchmarks.run                 # every scenario, the issue's sizes
    python -m benchmarks.run --quick         # a smoke run (100 bindings x 5 namespaces)
    python -m benchmarks.run --scenario renewal --bindings 500

Scenarios (``--scenario``, repeatable; default all):

  convergence  1. cold convergence: bindings x namespaces copies, operator start to all Ready
  renewal      2. renewal propagation: sources rotated at a steady rate, p50/p95/p99 latency
  steady       3. steady state: writes over a full resync after a restart and on the timer
  memory       4. operator RSS under scenario 1 with unrelated Secrets it must not cache
  cloud        5. ACM (moto) and Key Vault (the fake): calls per binding, first and no-change

Scenarios 2-4 run on the state scenario 1 builds, so selecting any of them runs
scenario 1 too. The ceiling (a plain client's Secret write rate against the same API
server) is measured first, and again after scenarios 1-3: the higher round is the
reference. The operator runs as its own process
(``certauto run``) for scenarios 1-4; scenario 5 runs it in this process, because the
Key Vault plugin needs test settings (the fake's CA and credential) that the command
line cannot give. Operator logs (and profiles) go to benchmarks/results/<timestamp>-logs/.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from benchmarks import report
from benchmarks.context import QUICK, Bench, Sizes
from benchmarks.experiments.trials import TRIALS
from benchmarks.kube import Kube
from benchmarks.procs import load_average
from certauto_core.testing.controlplane.process import ControlPlane

SCENARIOS: Final = ("convergence", "renewal", "steady", "memory", "cloud")
RESULTS_DIR: Final = Path(__file__).parent / "results"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=SCENARIOS,
        dest="scenarios",
        help="run this scenario (repeat; default: all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke-run sizes: 100 bindings x 5 namespaces, 2,000 unrelated Secrets, "
        "20 cloud bindings, 5 rotations/s for 10 s",
    )
    defaults = Sizes()
    parser.add_argument("--bindings", type=int, help=f"default {defaults.bindings}")
    parser.add_argument(
        "--namespaces",
        type=int,
        dest="namespaces_per_binding",
        help=f"namespaces each binding reflects to (default {defaults.namespaces_per_binding})",
    )
    parser.add_argument(
        "--unrelated-secrets", type=int, help=f"default {defaults.unrelated_secrets:,}"
    )
    parser.add_argument("--cloud-bindings", type=int, help=f"default {defaults.cloud_bindings}")
    parser.add_argument(
        "--rotation-rate", type=float, help=f"rotations/s (default {defaults.rotation_rate})"
    )
    parser.add_argument(
        "--rotation-seconds", type=float, help=f"default {defaults.rotation_seconds}"
    )
    parser.add_argument(
        "--ceiling-seconds",
        type=float,
        help=f"seconds per connection count of the ceiling (default {defaults.ceiling_seconds:g})",
    )
    parser.add_argument(
        "--ceiling-concurrency",
        type=lambda text: tuple(int(part) for part in text.split(",")),
        help="comma-separated connection counts (default "
        + ",".join(str(c) for c in defaults.ceiling_concurrency)
        + ")",
    )
    parser.add_argument(
        "--workers", type=int, help=f"the operator's --workers (default {defaults.workers})"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record py-spy profiles (speedscope JSON, next to the logs) of the operator "
        "in scenarios 1 and 3; needs py-spy on PATH",
    )
    parser.add_argument(
        "--trial",
        action="append",
        dest="trials",
        choices=sorted(TRIALS),
        default=[],
        help="apply a trial fix to the operator process (see benchmarks/experiments/trials.py)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="where to write the JSON (default benchmarks/results/<timestamp>.json)",
    )
    return parser


def sizes_from(args: argparse.Namespace) -> Sizes:
    base = QUICK if args.quick else Sizes()
    overrides = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(Sizes)
        if getattr(args, field.name, None) is not None
    }
    return dataclasses.replace(base, **overrides)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = int(line.split()[1]) // 1024
    except OSError:
        pass
    return {
        "load_average_at_start": load_average(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_mib": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kube_apiserver": _version_of("kube-apiserver"),
        "etcd": _version_of("etcd"),
    }


def _version_of(name: str) -> str:
    from certauto_core.testing.controlplane.build import ensure_built

    binaries = ensure_built(None)
    path = binaries.kube_apiserver if name == "kube-apiserver" else binaries.etcd
    flag = "--version"
    try:
        done = subprocess.run([str(path), flag], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.scenarios import ceiling, cloud, convergence, renewal, steady

    sizes = sizes_from(args)
    chosen = set(args.scenarios or SCENARIOS)
    needs_reflector = bool(chosen & {"convergence", "renewal", "steady", "memory"})
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    workdir = RESULTS_DIR / f"{stamp}-logs"
    workdir.mkdir(parents=True, exist_ok=True)
    if args.profile and shutil.which("py-spy") is None:
        raise SystemExit("--profile needs py-spy on PATH (e.g. `uv tool install py-spy`)")

    results: dict[str, Any] = {
        "started": stamp,
        "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
        "quick": bool(args.quick),
        "scenarios": sorted(chosen, key=SCENARIOS.index),
        "sizes": dataclasses.asdict(sizes),
        "machine": machine(),
    }
    started = time.monotonic()
    control_plane = ControlPlane()
    print(f"starting etcd and kube-apiserver ({results['machine']['kube_apiserver']})", flush=True)
    with control_plane:
        kube = Kube(control_plane)
        bench = Bench(sizes=sizes, control_plane=control_plane, kube=kube, workdir=workdir)
        bench.profile = bool(args.profile)
        bench.trials = tuple(args.trials)
        bench.results = results
        if bench.trials:
            results["trials"] = list(bench.trials)
        try:
            bench.say("ceiling: a plain concurrent client's Secret POSTs")
            results["ceiling"] = {"before": await ceiling.run(bench, "before")}
            if needs_reflector:
                await convergence.run(bench, memory="memory" in chosen)
                if "renewal" in chosen:
                    await renewal.run(bench)
                if "steady" in chosen:
                    await steady.run(bench)
                if bench.operator is not None:
                    await bench.operator.stop()
                    bench.operator = None
                bench.say("ceiling again, after scenarios 1-3")
                results["ceiling"]["after"] = await ceiling.run(bench, "after")
            if "cloud" in chosen:
                await cloud.run(bench)
        finally:
            if bench.operator is not None:
                await bench.operator.stop()
            await kube.aclose()
    results["total_seconds"] = round(time.monotonic() - started, 1)
    report.finalize(results)
    output = args.output or RESULTS_DIR / f"{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, sort_keys=False, default=str) + "\n")
    results["output"] = str(output)
    return results


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    results = asyncio.run(main_async(args))
    print()
    print(report.render(results))
    print(f"\nfigures written to {results['output']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
