"""CertAuto destination ``aws-acm``: a binding's certificate in AWS Certificate Manager.

One ACM certificate per destination entry, imported once and re-imported under
the same ARN on every renewal, found again by its tags when status is lost.
See the package README for configuration, IAM permissions and behaviour.
"""

from __future__ import annotations

__version__ = "0.1.0"
