"""What ``kubectl get -o wide`` would print, without kubectl: the API server's Table.

kubectl renders the ``meta.k8s.io/v1`` Table that the API server builds from a CRD's
``additionalPrinterColumns``; asking for the same Table shows exactly the columns and
cells a user would see, no kubectl binary needed.
"""

from __future__ import annotations

from typing import Any

import orjson

from certauto_core.kube.client import KubeClient

TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


async def get_wide(kube: KubeClient, path: str) -> dict[str, str]:
    """The row of ``kubectl get -o wide`` for the object at ``path``: column name -> cell."""
    response = await kube.api.call_api(
        path,
        "GET",
        header_params={"Accept": TABLE_ACCEPT},
        auth_settings=["BearerToken"],
        _preload_content=False,
    )
    try:
        raw = await response.read()
    finally:
        response.release()
    table: dict[str, Any] = orjson.loads(raw)
    if table.get("kind") != "Table":
        raise ValueError(f"expected a Table from {path}, got {table.get('kind')!r}")
    names = [column["name"] for column in table["columnDefinitions"]]
    [row] = table["rows"]
    return {name: str(cell) for name, cell in zip(names, row["cells"], strict=True)}
