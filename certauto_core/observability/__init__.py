"""What an operator of CertAuto sees: Prometheus metrics, JSON logs and health endpoints.

* :mod:`certauto_core.observability.metrics`: the :class:`~.metrics.Metrics` set, one
  ``CollectorRegistry`` per instance.
* :mod:`certauto_core.observability.logging`: :func:`~.logging.configure_logging`, the
  ``log_context`` that puts ``namespace``/``certificatebinding``/``destination`` on
  every record, and the last-line-defence redaction of key material.
* :mod:`certauto_core.observability.server`: the ``/metrics``, ``/healthz`` and
  ``/readyz`` HTTP server and its checks.

Import from the submodules; this package deliberately re-exports nothing.
"""
