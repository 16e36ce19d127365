"""Fixtures for the chart's tests: the built helm, the chart, and renders of it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from certauto_core.testing.helm import Helm

CHART = Path(__file__).resolve().parents[2] / "charts" / "certauto"
"""The chart in this source tree (tests run from the repository, the chart is not packaged)."""

Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def chart() -> Path:
    assert (CHART / "Chart.yaml").is_file(), f"no chart at {CHART}"
    return CHART


@pytest.fixture(scope="session")
def helm() -> Iterator[Helm]:
    """helm v4, built from the Go module proxy into the cache on first use."""
    with Helm.temporary() as built:
        yield built


@pytest.fixture(scope="session")
def render(helm: Helm, chart: Path) -> Render:
    """``render(values_files, values, release=..., namespace=...)``: the parsed manifests."""

    def rendered(
        values_files: Sequence[Path] = (),
        values: Mapping[str, Any] | None = None,
        *,
        release: str = "certauto",
        namespace: str = "certauto",
    ) -> list[dict[str, Any]]:
        return helm.template(
            chart, values_files, values=values, release=release, namespace=namespace
        )

    return rendered
