"""Imported by Python at start-up when this folder is on ``PYTHONPATH`` (``--trial``)."""

from __future__ import annotations

import os

if os.environ.get("CERTAUTO_BENCH_TRIALS"):
    from benchmarks.experiments.trials import apply_from_env

    apply_from_env()
