"""CertAuto core: the CertificateBinding operator and its destination plugin contract."""

__version__ = "0.1.0"
