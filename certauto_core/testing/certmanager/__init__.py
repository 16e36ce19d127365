"""cert-manager's real controller for tests: built from the Go module proxy, run as a process.

* ``python -m certauto_core.testing.certmanager build`` builds it into the cache
  (see :mod:`certauto_core.testing.certmanager.build`).
* :class:`~certauto_core.testing.certmanager.process.CertManagerController` runs it
  against a test control plane with the admin kubeconfig.
* :mod:`certauto_core.testing.certmanager.fixtures` is a pytest plugin with the
  ``cert_manager`` fixture; :mod:`certauto_core.testing.certmanager.issuers` makes
  SelfSigned and CA issuers and triggers renewals the way ``cmctl renew`` does.
"""
