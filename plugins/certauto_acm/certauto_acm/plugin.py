"""The entry point (``certauto.destinations``: ``aws-acm``): registers the destination type."""

from __future__ import annotations

from typing import Final

from certauto_acm.config import AcmConfig
from certauto_acm.destination import AcmDestination
from certauto_core.plugins.contract import DestinationType
from certauto_core.plugins.hookspecs import hookimpl

TYPE_NAME: Final = "aws-acm"


@hookimpl
def certauto_destination_types() -> list[DestinationType]:
    return [
        DestinationType(
            name=TYPE_NAME,
            config_model=AcmConfig,
            factory=AcmDestination,
            description=(
                "AWS Certificate Manager: imports the certificate once, re-imports it under "
                "the same ARN on renewal"
            ),
            api_version=1,
        )
    ]
