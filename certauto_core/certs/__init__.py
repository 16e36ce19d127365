"""Certificate material: parsing a ``kubernetes.io/tls`` Secret and validating it.

Everything here is synchronous, pure and free of I/O, so it is cheap to unit test
and safe to run in a worker thread when inputs are large. The modules are:

* :mod:`certauto_core.certs.material` - :class:`CertificateMaterial`, the parsed
  certificate, chain and key that destinations receive, and
  :func:`parse_tls_secret_data`.
* :mod:`certauto_core.certs.validation` - the rules a certificate must pass before
  any destination is touched, and :class:`ValidationReason`.
* :mod:`certauto_core.certs.info` - :class:`CertificateInfo`, the summary shown in
  a binding's ``status.certificate`` (also importable from ``material``).
* :mod:`certauto_core.certs.pem` - reading PEM certificates and keys, naming the
  usual mistakes (swapped fields, DER, encrypted or OpenSSH keys).
* :mod:`certauto_core.certs.reasons` - the reason codes and :class:`MaterialError`,
  kept apart so parsing and validation need not import each other.

Test certificates for all of this come from :mod:`certauto_core.testing.certs`.

Nothing is re-exported here on purpose: import from the module that defines a name,
so that importing the package stays cheap and the dependency graph stays obvious.
"""
