"""The figures as a table, each held against its target, and the derived ratios."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

CONVERGENCE_TARGET: Final = 0.70
"""Cold convergence at >= 70% of the ceiling's write rate."""
RENEWAL_P99_TARGET_MS: Final = 1000.0
RSS_TARGET_MIB: Final = 100.0
ACM_WRITES: Final = frozenset(
    {"ImportCertificate", "AddTagsToCertificate", "RemoveTagsFromCertificate", "DeleteCertificate"}
)

Row = tuple[str, str, str, str, str]


def finalize(results: dict[str, Any]) -> None:
    """Derive what needs every measurement: the reference ceiling and the targets' verdicts.

    The reference ceiling is the higher of the two rounds (before the workload and
    after scenarios 1-3), so background load during one round cannot flatter the
    operator's ratio.
    """
    ceiling = results.get("ceiling")
    if not isinstance(ceiling, dict):
        return
    rounds = [
        float(ceiling[tag]["writes_per_second"])
        for tag in ("before", "after")
        if isinstance(ceiling.get(tag), dict)
    ]
    if not rounds:
        return
    reference = max(rounds)
    ceiling["writes_per_second"] = reference
    convergence = results.get("convergence")
    if isinstance(convergence, dict):
        rate = float(convergence["secret_writes_per_second"])
        convergence["ceiling_writes_per_second"] = reference
        convergence["ratio_to_ceiling"] = round(rate / reference, 3)
        convergence["ratio_to_each_ceiling_round"] = [round(rate / r, 3) for r in rounds]
    results["targets"] = verdicts(results)


def verdicts(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target the issue sets, the figure held against it, and whether it is met."""
    out: dict[str, dict[str, Any]] = {}
    convergence = results.get("convergence")
    if isinstance(convergence, dict) and "ratio_to_ceiling" in convergence:
        ratio = float(convergence["ratio_to_ceiling"])
        out["convergence_ratio"] = {
            "target": f">= {CONVERGENCE_TARGET:.0%} of the ceiling",
            "value": ratio,
            "met": ratio >= CONVERGENCE_TARGET,
        }
    renewal = results.get("renewal")
    if isinstance(renewal, dict):
        p99 = float(renewal["latency_all_copies"]["p99_ms"])
        complete = int(renewal["incomplete"]) == 0
        out["renewal_p99"] = {
            "target": f"p99 <= {RENEWAL_P99_TARGET_MS:.0f} ms at 1,000 bindings",
            "value": p99,
            "bindings": renewal["bindings"],
            "met": complete and not math.isnan(p99) and p99 <= RENEWAL_P99_TARGET_MS,
        }
    memory = results.get("memory")
    if isinstance(memory, dict) and "peak_rss_mib" in memory:
        peak = float(memory["peak_rss_mib"])
        out["rss"] = {
            "target": f"<= {RSS_TARGET_MIB:.0f} MiB (scenario 4)",
            "value": peak,
            "with_unrelated_secrets": bool(memory.get("with_unrelated_secrets")),
            "met": peak <= RSS_TARGET_MIB,
        }
    steady = results.get("steady")
    if isinstance(steady, dict):
        writes = int(steady["restart"]["api_writes"]) + int(steady["periodic"]["api_writes"])
        out["steady_writes"] = {"target": "0 writes", "value": writes, "met": writes == 0}
    cloud = results.get("cloud")
    if isinstance(cloud, dict):
        for type_name in ("aws-acm", "azure-key-vault"):
            entry = cloud.get(type_name)
            if isinstance(entry, dict) and "resync" in entry:
                calls = int(entry["resync"]["calls"])
                out[f"steady_cloud_calls_{type_name}"] = {
                    "target": "0 cloud calls on a no-change resync",
                    "value": calls,
                    "met": calls == 0,
                }
    return out


# ---------------------------------------------------------------------------- the table


def _n(value: Any, digits: int = 0) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def _met(results: Mapping[str, Any], key: str) -> str:
    verdict = (results.get("targets") or {}).get(key)
    if not isinstance(verdict, dict):
        return ""
    return "yes" if verdict["met"] else "NO"


def _rows(results: Mapping[str, Any]) -> list[Row]:
    rows: list[Row] = []
    ceiling = results.get("ceiling") or {}
    reference = float(ceiling.get("writes_per_second") or 0.0)
    if ceiling:
        parts = []
        for tag in ("before", "after"):
            round_ = ceiling.get(tag)
            if isinstance(round_, dict):
                parts.append(
                    f"{tag} {_n(round_['writes_per_second'])}/s "
                    f"({round_['best_concurrency']} conns)"
                )
        rows.append(("ceiling", "plain client, Secret POSTs/s", "; ".join(parts), "reference", ""))
        watched = [
            f"{tag} {_n(ceiling[tag]['watched']['writes_per_second'])}/s"
            for tag in ("before", "after")
            if isinstance(ceiling.get(tag), dict) and "watched" in ceiling[tag]
        ]
        if watched:
            rows.append(("", "same, writes watched", "; ".join(watched), "not used", ""))
    conv = results.get("convergence")
    if isinstance(conv, dict):
        cpu = conv["cpu_seconds"]
        rows += [
            (
                "1 convergence",
                "bindings x namespaces",
                f"{conv['bindings']:,} x {conv['namespaces_per_binding']} = "
                f"{conv['copies_found']:,} copies",
                f"{conv['copies_expected']:,}",
                "yes" if conv["copies_found"] == conv["copies_expected"] else "NO",
            ),
            (
                "",
                "operator start -> all Ready",
                f"{_n(conv['seconds_to_all_ready'], 1)} s "
                f"(caches synced {_n(conv['seconds_to_caches_synced'], 1)} s)",
                "",
                "",
            ),
            (
                "",
                "Secret writes/s (vs ceiling)",
                f"{_n(conv['secret_writes_per_second'])}/s of {_n(reference)}/s = "
                f"{_n(100 * float(conv.get('ratio_to_ceiling', 0)), 0)}%",
                f">= {CONVERGENCE_TARGET:.0%} ({_n(CONVERGENCE_TARGET * reference)}/s)",
                _met(results, "convergence_ratio"),
            ),
            (
                "",
                "API writes, by resource",
                ", ".join(f"{k} {v:,}" for k, v in conv["writes_by_resource"].items())
                + f" (the operator counted {_n(conv['operator_api_writes'])})",
                "",
                "",
            ),
            ("", "CPU seconds", _cpu(cpu), "", ""),
            (
                "",
                "CPU ms per copy (plain write)",
                f"operator {_n(conv['operator_cpu_ms_per_copy'], 2)}, kube-apiserver "
                f"{_n(conv['apiserver_cpu_ms_per_copy'], 2)} "
                f"({_n(_ceiling_apiserver_ms(ceiling), 2)}), etcd "
                f"{_n(conv['etcd_cpu_ms_per_copy'], 2)}",
                "",
                "",
            ),
        ]
    renewal = results.get("renewal")
    if isinstance(renewal, dict):
        latency = renewal["latency_all_copies"]
        first = renewal["latency_first_copy"]
        rotations = max(1, int(renewal["completed"]))
        rows += [
            (
                "2 renewal",
                "rotations under load",
                f"{renewal['rotations']} at {_n(renewal['rotation_rate'], 1)}/s over "
                f"{renewal['bindings']:,} bindings; {renewal['completed']} propagated",
                "all",
                "yes" if renewal["incomplete"] == 0 else "NO",
            ),
            (
                "",
                "source -> all copies p50/p95/p99",
                f"{_n(latency['p50_ms'])} / {_n(latency['p95_ms'])} / "
                f"{_n(latency['p99_ms'])} ms (max {_n(latency['max_ms'])})",
                f"p99 <= {RENEWAL_P99_TARGET_MS:.0f} ms",
                _met(results, "renewal_p99"),
            ),
            (
                "",
                "source -> first copy p50/p99",
                f"{_n(first['p50_ms'])} / {_n(first['p99_ms'])} ms",
                "",
                "",
            ),
            (
                "",
                "operator requests per rotation",
                f"{_n(renewal['operator_api_requests'] / rotations, 1)} "
                f"({_n(renewal['operator_api_writes'] / rotations, 1)} writes); Secrets: "
                + ", ".join(f"{k} {v:,}" for k, v in renewal["secret_requests_by_verb"].items()),
                "",
                "",
            ),
            (
                "",
                "CPU seconds",
                _cpu(renewal["cpu_seconds"])
                + f"; operator {_n(renewal['operator_cpu_ms_per_rotation'], 1)} ms/rotation",
                "",
                "",
            ),
        ]
    steady = results.get("steady")
    if isinstance(steady, dict):
        restart, periodic = steady["restart"], steady["periodic"]
        rows += [
            (
                "3 steady",
                "writes, resync after restart",
                f"{restart['api_writes']} ({restart['reconciles']:,.0f} reconciles, "
                f"done {_n(restart['seconds_to_resync_done'], 1)} s after start)",
                "0",
                "yes" if restart["api_writes"] == 0 else "NO",
            ),
            (
                "",
                "writes, periodic resync",
                f"{periodic['api_writes']} ({periodic['reconciles']:,.0f} reconciles)",
                "0",
                "yes" if periodic["api_writes"] == 0 else "NO",
            ),
        ]
        cloud = results.get("cloud") or {}
        for type_name in ("aws-acm", "azure-key-vault"):
            entry = cloud.get(type_name)
            if isinstance(entry, dict) and "resync" in entry:
                rows.append(
                    (
                        "",
                        f"{type_name} calls, resync",
                        f"{entry['resync']['calls']:,} (see 5)",
                        "0",
                        _met(results, f"steady_cloud_calls_{type_name}"),
                    )
                )
    memory = results.get("memory")
    if isinstance(memory, dict) and "peak_rss_mib" in memory:
        unrelated = memory.get("unrelated") or {}
        context = (
            f"with {unrelated['count']:,} unrelated {unrelated['bytes_each']}-byte Secrets"
            if memory.get("with_unrelated_secrets") and unrelated
            else "without unrelated Secrets (scenario 4 not selected)"
        )
        baseline = memory.get("import_baseline_mib") or {}
        rows += [
            ("4 memory", "setup", context, "", ""),
            (
                "",
                "RSS after imports only",
                "; ".join(
                    f"{label.replace('_', ' ')} {entry['rss_mib']} MiB"
                    for label, entry in baseline.items()
                )
                or "n/a",
                "",
                "",
            ),
            (
                "",
                "operator RSS: synced / converged",
                f"{_n(memory['rss_at_caches_synced_mib'], 1)} / "
                f"{_n(memory['rss_after_convergence_mib'], 1)} MiB",
                "",
                "",
            ),
            (
                "",
                "operator peak RSS (VmHWM)",
                f"{_n(memory['peak_rss_mib'], 1)} MiB",
                f"<= {RSS_TARGET_MIB:.0f} MiB",
                _met(results, "rss"),
            ),
        ]
        if "restart_peak_rss_mib" in memory:
            rows.append(
                (
                    "",
                    "peak RSS, restart over converged",
                    f"{_n(memory['restart_peak_rss_mib'], 1)} MiB",
                    "",
                    "",
                )
            )
    cloud = results.get("cloud")
    if isinstance(cloud, dict):
        first_row = True
        for type_name in ("aws-acm", "azure-key-vault"):
            entry = cloud.get(type_name)
            label = "5 cloud" if first_row else ""
            first_row = False
            if not isinstance(entry, dict):
                continue
            if "skipped" in entry:
                rows.append((label, type_name, f"skipped: {entry['skipped']}", "", ""))
                continue
            if "first_sync" not in entry:
                continue
            rows += [
                (
                    label,
                    f"{type_name} calls/binding, first",
                    f"{_n(entry['first_sync']['calls_per_binding'], 2)} "
                    f"({_ops(entry['first_sync']['by_operation'], cloud['bindings_per_type'])})",
                    "",
                    "",
                ),
                (
                    "",
                    f"{type_name} calls/binding, resync",
                    f"{_n(entry['resync']['calls_per_binding'], 2)} "
                    f"({_ops(entry['resync']['by_operation'], cloud['bindings_per_type'])})",
                    "0",
                    _met(results, f"steady_cloud_calls_{type_name}"),
                ),
            ]
        if "skipped" in cloud:
            rows.append(("5 cloud", "", f"skipped: {cloud['skipped']}", "", ""))
    return rows


def _ceiling_apiserver_ms(ceiling: Mapping[str, Any]) -> float:
    """The API server's CPU per plain Secret write, at the ceiling's best level."""
    values = [
        float(ceiling[tag]["apiserver_cpu_ms_per_write"])
        for tag in ("before", "after")
        if isinstance(ceiling.get(tag), dict) and "apiserver_cpu_ms_per_write" in ceiling[tag]
    ]
    return min(values) if values else math.nan


def _ops(by_operation: Mapping[str, int], bindings: int) -> str:
    if not by_operation:
        return "none"
    return ", ".join(
        f"{name} {count / max(1, bindings):.2g}"
        for name, count in sorted(by_operation.items(), key=lambda item: -item[1])
    )


def _cpu(cpu: Mapping[str, float]) -> str:
    names = ("operator", "kube-apiserver", "etcd", "driver", "other_processes")
    shown = [f"{name} {cpu[name]:.1f}" for name in names if name in cpu]
    return f"{', '.join(shown)} over {cpu['wall']:.1f} s wall"


def render(results: Mapping[str, Any]) -> str:
    """The table: scenario, figure, value, target, met."""
    header: Row = ("scenario", "figure", "value", "target", "met")
    rows = _rows(results)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    widths[2] = min(widths[2], 72)
    lines = []
    for row in [header, *rows]:
        cells = [row[i].ljust(widths[i]) if i < 4 else row[i] for i in range(5)]
        lines.append("  ".join(cells).rstrip())
        if row is header:
            lines.append("  ".join("-" * w for w in widths) + "  ---")
    machine = results.get("machine") or {}
    lines.append("")
    lines.append(
        f"machine: {machine.get('cpus')} cores ({machine.get('cpu_model')}), "
        f"{_n((machine.get('memory_mib') or 0) / 1024, 1)} GiB; {machine.get('kube_apiserver')}, "
        f"{machine.get('etcd')}; Python {machine.get('python')}; load average at start "
        f"{machine.get('load_average_at_start')}"
    )
    lines.append(f"run: {results.get('command')}  ({_n(results.get('total_seconds'), 0)} s)")
    return "\n".join(lines)
