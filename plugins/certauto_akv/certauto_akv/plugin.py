"""The entry point of the ``azure-key-vault`` destination type (``certauto.destinations``).

The hook returns one :class:`DestinationType` built by :func:`destination_type`.
Tests and embedders call :func:`destination_type` themselves with
:class:`~certauto_akv.destination.AkvSettings` to choose the credential factory
and transport options (a test CA, a fake vault's challenge resource), which the
user-facing ``config`` deliberately cannot express.
"""

from __future__ import annotations

import functools
from typing import Final

from certauto_akv.config import AkvConfig
from certauto_akv.destination import AkvDestination, AkvSettings
from certauto_core.plugins.contract import DestinationType
from certauto_core.plugins.hookspecs import hookimpl

__all__ = ["TYPE_NAME", "certauto_destination_types", "destination_type"]

TYPE_NAME: Final = "azure-key-vault"
DESCRIPTION: Final = (
    "Azure Key Vault: imports the certificate, key and chain as a new certificate version"
)


def destination_type(settings: AkvSettings | None = None) -> DestinationType:
    """The ``azure-key-vault`` registration, with ``settings`` for every destination it makes."""
    return DestinationType(
        name=TYPE_NAME,
        config_model=AkvConfig,
        factory=functools.partial(AkvDestination, settings=settings),
        description=DESCRIPTION,
        api_version=1,
    )


@hookimpl
def certauto_destination_types() -> list[DestinationType]:
    """Register ``azure-key-vault`` with the production settings."""
    return [destination_type()]
