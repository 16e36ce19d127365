"""The CertificateBinding API (``sanorg.in/v1alpha1``).

* ``crd.yaml``: the CustomResourceDefinition, the source of truth for the schema.
* :mod:`certauto_core.api.crd`: loads it (as package data) and names its parts.
* :mod:`certauto_core.api.models`: pydantic models of spec and status that mirror it
  (``tests/unit/test_crd_drift.py`` keeps the two in step).
* :mod:`certauto_core.api.conditions`: setting ``metav1.Condition`` entries.
"""
