"""CertAuto's benchmarks against a real local control plane (``nox -s bench``).

``python -m benchmarks.run --help`` lists the scenarios and sizes; ``docs/performance.md``
has the figures, the machine they were measured on and the command that reproduces them.
"""
