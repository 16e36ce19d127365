"""The hook implementation the ``certauto.destinations`` entry point ``reflector`` names."""

from __future__ import annotations

from certauto_core.plugins.contract import DestinationType
from certauto_core.plugins.hookspecs import hookimpl
from certauto_reflector.config import ReflectorConfig
from certauto_reflector.destination import ReflectorDestination

TYPE_NAME = "reflector"

REFLECTOR = DestinationType(
    name=TYPE_NAME,
    config_model=ReflectorConfig,
    factory=ReflectorDestination,
    description="Copies the certificate as kubernetes.io/tls Secrets into other namespaces.",
    api_version=1,
)
"""The ``reflector`` type record (hook API version 1)."""


@hookimpl
def certauto_destination_types() -> list[DestinationType]:
    """The reflector is one type: ``reflector``."""
    return [REFLECTOR]
