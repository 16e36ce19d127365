"""The text of ``certauto plugins``: what is installed, and what was skipped and why.

This is the first thing to run when a binding reports an unknown destination
type, so it must never fail on the very problems it exists to show: a type
name registered twice is listed (with the error the operator would stop on),
not raised.
"""

from __future__ import annotations

from collections.abc import Sequence

import certauto_core
from certauto_core.plugins.contract import HOOK_API_VERSION
from certauto_core.plugins.manager import (
    BLOCK_PLUGINS_ENV,
    DuplicateDestinationType,
    PluginManager,
    PluginOrigin,
)

_MISSING = "-"


def format_plugin_table(manager: PluginManager) -> str:
    """Render the destination types, failed plugins and blocked plugins as aligned text."""
    lines = [
        f"certauto-core {certauto_core.__version__}, hook API version {HOOK_API_VERSION}",
        "",
    ]
    registrations = manager.registrations()
    if registrations:
        lines += _table(
            ("TYPE", "DISTRIBUTION", "VERSION", "API", "DESCRIPTION"),
            [
                (
                    reg.name,
                    reg.distribution or _plugin_label(reg.origin),
                    reg.version or _MISSING,
                    str(reg.destination_type.api_version),
                    _first_line(reg.destination_type.description),
                )
                for reg in registrations
            ],
        )
    else:
        lines.append("No destination types are installed.")

    try:
        manager.destination_types()
    except DuplicateDestinationType as exc:
        lines += ["", "ERROR: the operator will refuse to start:", *str(exc).splitlines()]

    failures = manager.failures
    if failures:
        lines += ["", "FAILED (skipped; the operator runs without them):"]
        lines += _table(
            ("PLUGIN", "DISTRIBUTION", "VERSION", "STAGE", "ERROR"),
            [
                (
                    _plugin_label(failure.origin),
                    failure.origin.distribution or _MISSING,
                    failure.origin.version or _MISSING,
                    failure.phase,
                    failure.error,
                )
                for failure in failures
            ],
        )

    blocked = manager.blocked
    if blocked:
        lines += ["", f"BLOCKED by {BLOCK_PLUGINS_ENV} (not imported):"]
        lines += _table(
            ("PLUGIN", "DISTRIBUTION", "VERSION"),
            [
                (
                    _plugin_label(origin),
                    origin.distribution or _MISSING,
                    origin.version or _MISSING,
                )
                for origin in blocked
            ],
        )
    return "\n".join(lines) + "\n"


def _plugin_label(origin: PluginOrigin) -> str:
    return origin.entry_point or f"{origin.plugin_name} (in-process)"


def _first_line(text: str) -> str:
    stripped = text.strip()
    return " ".join(stripped.splitlines()[0].split()) if stripped else ""


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, like ``kubectl get``; no trailing blanks."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
