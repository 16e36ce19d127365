"""Kubernetes resource types and their REST paths, without generated models."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class Resource:
    """One resource type of the API, e.g. ``Resource("", "v1", "secrets")``."""

    group: str
    version: str
    plural: str
    namespaced: bool = True
    kind: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The REST path: a collection (cluster-wide or in ``namespace``) or one object.

        A cluster-scoped resource takes ``name=`` only: a namespace given to it is a
        mistake (``NAMESPACES.path("team-a")`` would silently mean the collection).
        """
        if not self.namespaced and namespace is not None:
            raise ValueError(f"{self.plural} are cluster-scoped: pass name=, not a namespace")
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
            if subresource is not None:
                base += f"/{subresource}"
        return base


SECRETS = Resource("", "v1", "secrets", kind="Secret")
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False, kind="Namespace")
EVENTS = Resource("", "v1", "events", kind="Event")
LEASES = Resource("coordination.k8s.io", "v1", "leases", kind="Lease")
CERTIFICATE_BINDINGS = Resource(
    "sanorg.in", "v1alpha1", "certificatebindings", kind="CertificateBinding"
)
CERTIFICATES = Resource("cert-manager.io", "v1", "certificates", kind="Certificate")
