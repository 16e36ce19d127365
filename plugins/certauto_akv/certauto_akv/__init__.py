"""CertAuto's ``azure-key-vault`` destination: certificates imported into Azure Key Vault."""

from certauto_akv.config import AkvConfig, ContentType, CredentialType, OnSoftDeleted
from certauto_akv.credentials import CredentialFactory, CredentialRequest
from certauto_akv.destination import AkvDestination, AkvSettings

__all__ = [
    "AkvConfig",
    "AkvDestination",
    "AkvSettings",
    "ContentType",
    "CredentialFactory",
    "CredentialRequest",
    "CredentialType",
    "OnSoftDeleted",
]

__version__ = "0.1.0"
