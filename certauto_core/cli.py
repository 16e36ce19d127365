"""``certauto``: run the operator, list plugins, print the CRD."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from datetime import timedelta

from certauto_core import __version__
from certauto_core.durations import parse_duration


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _seconds(text: str) -> float:
    return _duration(text).total_seconds()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="certauto", description=__doc__)
    parser.add_argument("--version", action="version", version=f"certauto {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    run.add_argument(
        "--kubeconfig", help="kubeconfig path (default: in-cluster, else ~/.kube/config)"
    )
    run.add_argument("--context", help="kubeconfig context")
    run.add_argument(
        "--namespace",
        action="append",
        dest="namespaces",
        default=[],
        help="reconcile CertificateBindings in this namespace (repeat; default: all)",
    )
    run.add_argument("--workers", type=int, default=8, help="concurrent reconciles (default 8)")
    run.add_argument(
        "--metrics-address",
        default="0.0.0.0:8080",
        help="host:port for /metrics, /healthz, /readyz",
    )
    run.add_argument("--resync-interval", type=_duration, default=timedelta(minutes=10))
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument("--log-format", default="json", choices=["json", "text"])
    run.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="elect a leader on a Lease (default on)",
    )
    run.add_argument("--lease-namespace", help="namespace of the Lease (default: the pod's)")
    run.add_argument("--lease-name", default="certauto-leader")
    run.add_argument("--lease-duration", type=_seconds, default=15.0)
    run.add_argument("--renew-deadline", type=_seconds, default=10.0)
    run.add_argument("--retry-period", type=_seconds, default=2.0)
    run.add_argument("--identity", help="this replica's name in the Lease (default: hostname-pid)")

    sub.add_parser("plugins", help="list the installed destination types")
    sub.add_parser("crd", help="print the CertificateBinding CRD (YAML)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "plugins":
        from certauto_core.plugins.listing import format_plugin_table
        from certauto_core.plugins.manager import PluginManager

        manager = PluginManager()
        manager.load_entry_points()
        print(format_plugin_table(manager))
        return 0
    if args.command == "crd":
        from certauto_core.api.crd import crd_yaml

        sys.stdout.write(crd_yaml())
        return 0
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    from certauto_core.observability.logging import configure_logging
    from certauto_core.operator import Operator, OperatorConfig

    configure_logging(args.log_level, args.log_format)
    host, _, port = args.metrics_address.rpartition(":")
    values = dict(
        kubeconfig=args.kubeconfig,
        context=args.context,
        namespaces=tuple(args.namespaces),
        workers=args.workers,
        metrics_host=host or "0.0.0.0",  # noqa: S104
        metrics_port=int(port),
        resync_interval=args.resync_interval,
        leader_election=args.leader_elect,
        lease_namespace=args.lease_namespace,
        lease_name=args.lease_name,
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
    )
    if args.identity:
        values["identity"] = args.identity
    operator = Operator(OperatorConfig(**values))
    return asyncio.run(_until_signalled(operator))


async def _until_signalled(operator: object) -> int:
    from certauto_core.operator import Operator

    assert isinstance(operator, Operator)
    task = asyncio.create_task(operator.run())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return 0


if __name__ == "__main__":
    sys.exit(main())
