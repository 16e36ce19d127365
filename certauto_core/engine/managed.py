"""Managed mode: a binding's ``spec.certificate`` becomes a cert-manager Certificate it owns.

For a binding ``apps/web`` CertAuto keeps a ``cert-manager.io/v1`` Certificate
``apps/web`` in sync with ``spec.certificate``:

* owned by the binding (``ownerReferences`` with ``controller: true`` and
  ``blockOwnerDeletion``), labelled ``app.kubernetes.io/managed-by: certauto`` and
  ``certauto.sanorg.in/binding-uid`` (the Certificate watch selects on the former);
* its ``secretTemplate`` is the user's plus ``certauto.sanorg.in/watched: "true"``
  (so the Secret watch, which selects on that label only, sees the issued Secret)
  and ``certauto.sanorg.in/binding-uid`` (so deletion can tell our Secret from a
  stranger's of the same name);
* written only when what the API server holds differs from what the spec asks for;
* a Certificate of that name that this binding does not own is left alone and
  reported as ``CertificateConflict``.

Once cert-manager reports the Certificate ``Ready`` for its current generation, the
Secret it wrote is the binding's source, validated and synced exactly as a
``sourceSecretRef`` Secret. Until then the binding says why not, in cert-manager's
words where it has any (the Certificate's ``Issuing`` and ``Ready`` conditions, the
current CertificateRequest's ``Ready`` condition) and in ours where it has none: an
``issuerRef`` naming an Issuer or ClusterIssuer that does not exist is
``IssuerNotFound`` whether or not a cert-manager controller is running.

There is no Certificate cache: a reconcile reads the Certificate with one GET (reads
are cheap, a stale cache right after our own write is not), and a steady state writes
nothing. The Certificate watch (label-selected, in :mod:`certauto_core.operator`)
only brings the owning binding back into the queue when cert-manager reports progress.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from certauto_core.api.models import ManagedCertificate
from certauto_core.engine.conditions_summary import VALIDATED, Verdict
from certauto_core.engine.indexes import SOURCE_LABEL_VALUE, WATCHED_LABEL, WatchedSecrets
from certauto_core.kube.client import JSON, KubeClient
from certauto_core.kube.errors import ApiError, ConflictError, NotFoundError
from certauto_core.kube.events import EventRecorder
from certauto_core.kube.resources import CERTIFICATES, SECRETS, Resource

__all__ = [
    "BINDING_UID_LABEL",
    "CERTIFICATE_REQUESTS",
    "CLUSTER_ISSUERS",
    "ISSUERS",
    "MANAGED_BY_LABEL",
    "MANAGED_BY_SELECTOR",
    "MANAGED_BY_VALUE",
    "SOURCE_PREFIX",
    "Issued",
    "ManagedCertificates",
    "Reason",
    "certificate_name",
    "desired_certificate",
    "owner_binding",
    "owner_reference",
    "was_managed",
]

log = logging.getLogger("certauto.managed")

CERTIFICATE_REQUESTS: Final = Resource(
    "cert-manager.io", "v1", "certificaterequests", kind="CertificateRequest"
)
ISSUERS: Final = Resource("cert-manager.io", "v1", "issuers", kind="Issuer")
CLUSTER_ISSUERS: Final = Resource(
    "cert-manager.io", "v1", "clusterissuers", namespaced=False, kind="ClusterIssuer"
)

MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "certauto"
MANAGED_BY_SELECTOR: Final = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
BINDING_UID_LABEL: Final = "certauto.sanorg.in/binding-uid"
BINDING_API_VERSION: Final = "sanorg.in/v1alpha1"
BINDING_KIND: Final = "CertificateBinding"

CERT_MANAGER_GROUP: Final = "cert-manager.io"
CERTIFICATE_NAME_ANNOTATION: Final = "cert-manager.io/certificate-name"
REVISION_ANNOTATION: Final = "cert-manager.io/certificate-revision"
SOURCE_PREFIX: Final = "certificate/"


class Reason:
    """``Validated``/``Ready`` reasons of a managed binding that is not (yet) usable."""

    CERT_MANAGER_NOT_INSTALLED: Final = "CertManagerNotInstalled"
    CONFLICT: Final = "CertificateConflict"
    ISSUER_NOT_FOUND: Final = "IssuerNotFound"
    ISSUER_NOT_READY: Final = "IssuerNotReady"
    REQUEST_FAILED: Final = "CertificateRequestFailed"
    REQUEST_DENIED: Final = "CertificateRequestDenied"
    ISSUING_FAILED: Final = "IssuingFailed"
    ISSUING: Final = "CertificateIssuing"
    NOT_READY: Final = "CertificateNotReady"
    WAITING: Final = "WaitingForCertManager"
    SECRET_NOT_FOUND: Final = "SecretNotFound"  # noqa: S105 - a condition reason
    RENEWAL_FAILED: Final = "RenewalFailed"
    """An Event only: the current certificate is good, but cert-manager failed to renew it."""


def certificate_name(binding_name: str) -> str:
    """The managed Certificate is named like its binding (same namespace)."""
    return binding_name


def owner_reference(binding: Mapping[str, Any]) -> JSON:
    meta = binding["metadata"]
    return {
        "apiVersion": BINDING_API_VERSION,
        "kind": BINDING_KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def desired_certificate(binding: Mapping[str, Any], managed: ManagedCertificate) -> JSON:
    """The Certificate ``spec.certificate`` asks for, as the API server would hold it."""
    meta = binding["metadata"]
    spec = managed.to_dict()  # camelCase, durations as Go strings, empties left out
    template = spec.pop("secretTemplate", None) or {}
    labels = {
        **(template.get("labels") or {}),
        WATCHED_LABEL: SOURCE_LABEL_VALUE,
        BINDING_UID_LABEL: meta["uid"],
    }
    spec["secretTemplate"] = {"labels": labels}
    if template.get("annotations"):
        spec["secretTemplate"]["annotations"] = dict(template["annotations"])
    return {
        "apiVersion": CERTIFICATES.api_version,
        "kind": CERTIFICATES.kind,
        "metadata": {
            "name": certificate_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, BINDING_UID_LABEL: meta["uid"]},
            "ownerReferences": [owner_reference(binding)],
        },
        "spec": spec,
    }


def owner_binding(certificate: Mapping[str, Any]) -> tuple[str, str] | None:
    """(namespace, name) of the binding that controls this Certificate, if any."""
    meta = certificate.get("metadata") or {}
    for ref in meta.get("ownerReferences") or ():
        if (
            ref.get("controller")
            and ref.get("kind") == BINDING_KIND
            and str(ref.get("apiVersion", "")).startswith("sanorg.in/")
            and ref.get("name")
        ):
            return (str(meta.get("namespace") or ""), str(ref["name"]))
    return None


def _owned_by(certificate: Mapping[str, Any], uid: str) -> bool:
    refs = (certificate.get("metadata") or {}).get("ownerReferences") or ()
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)


def _condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or ():
        if condition.get("type") == type_:
            found: Mapping[str, Any] = condition
            return found
    return None


def _current(condition: Mapping[str, Any] | None, generation: Any) -> bool:
    """Whether a condition speaks about this generation (absent observedGeneration: yes)."""
    if condition is None:
        return False
    observed = condition.get("observedGeneration")
    return observed is None or observed == generation


def _said(condition: Mapping[str, Any]) -> str:
    reason, message = condition.get("reason") or "", condition.get("message") or ""
    return f"{reason}: {message}" if reason and message else reason or message


@dataclass(frozen=True)
class Issued:
    """What managed mode found: the issued Secret's data, or why there is none yet."""

    verdict: Verdict
    data: Mapping[str, bytes] | None = None
    note: str = ""
    """Something worth saying next to a valid certificate (a failed renewal)."""


@dataclass
class ManagedCertificates:
    """Managed mode's API work for one reconcile (cheap to make; holds no state)."""

    kube: KubeClient
    secrets: WatchedSecrets
    events: EventRecorder
    guard: Callable[[], None]
    """Raises when this replica may no longer write (called before every write)."""

    # ------------------------------------------------------------------ reconcile
    async def issued(self, binding: Mapping[str, Any], managed: ManagedCertificate) -> Issued:
        """Create or update the Certificate, then read how far cert-manager got."""
        desired = desired_certificate(binding, managed)
        namespace, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
        where = f"{namespace}/{name}"
        try:
            certificate, ours = await self._ensure(desired)
        except _NotInstalledError as error:
            return Issued(
                Verdict(
                    False,
                    Reason.CERT_MANAGER_NOT_INSTALLED,
                    f"cannot create Certificate {where}: the API server does not serve "
                    f"cert-manager.io/v1 Certificates ({error}); install cert-manager",
                )
            )
        if not ours:
            return self._conflict(certificate)

        generation = certificate["metadata"].get("generation")
        ready = _condition(certificate, "Ready")
        issuing = _condition(certificate, "Issuing")
        if ready is not None and ready.get("status") == "True" and _current(ready, generation):
            return await self._issued_secret(binding, certificate, managed, issuing)
        return Issued(await self._why_not_ready(certificate, managed, ready, issuing))

    async def _ensure(self, desired: JSON) -> tuple[JSON, bool]:
        """The Certificate as the API server holds it after our write, if one was needed,
        and whether it is ours (a Certificate we do not own is returned untouched).
        """
        meta = desired["metadata"]
        ours = meta["ownerReferences"][0]
        path = CERTIFICATES.path(meta["namespace"], meta["name"])
        try:
            current = await self.kube.get(path)
        except ValueError as error:
            # For an API group it does not serve, the API server answers a plain-text
            # "404 page not found" that KubeClient cannot decode as JSON.
            raise _NotInstalledError("404 page not found") from error
        except NotFoundError:
            self.guard()
            try:
                created = await self.kube.create(CERTIFICATES.path(meta["namespace"]), desired)
            except NotFoundError as error:
                raise _NotInstalledError(error.message or "404") from error
            log.info("created Certificate %s/%s", meta["namespace"], meta["name"])
            return created, True
        if not _owned_by(current, ours["uid"]):
            return current, False
        current_meta = current["metadata"]
        labels = current_meta.get("labels") or {}
        refs = list(current_meta.get("ownerReferences") or [])
        if (
            current.get("spec") == desired["spec"]
            and all(labels.get(k) == v for k, v in meta["labels"].items())
            and ours in refs
        ):
            return current, True  # in sync: no write
        body = {
            **current,
            "metadata": {
                **{k: v for k, v in current_meta.items() if k != "managedFields"},
                "labels": {**labels, **meta["labels"]},
                "ownerReferences": [r for r in refs if r.get("uid") != ours["uid"]] + [ours],
            },
            "spec": desired["spec"],
        }
        self.guard()
        updated = await self.kube.replace(path, body)  # resourceVersion: optimistic lock
        log.info("updated Certificate %s/%s to match the binding", meta["namespace"], meta["name"])
        return updated, True

    @staticmethod
    def _conflict(current: Mapping[str, Any]) -> Issued:
        meta = current["metadata"]
        found = owner_binding(current)
        refs = meta.get("ownerReferences") or []
        if found is not None and found[1] == meta["name"]:
            owner = "its controller is an earlier CertificateBinding of this name"
        elif found is not None:
            owner = f"it belongs to CertificateBinding {found[1]!r}"
        elif refs:
            owner = "owned by " + ", ".join(f"{r.get('kind')} {r.get('name')!r}" for r in refs)
        else:
            owner = "it has no owner"
        return Issued(
            Verdict(
                False,
                Reason.CONFLICT,
                f"Certificate {meta['namespace']}/{meta['name']} exists and is not owned by "
                f"this binding ({owner}); CertAuto leaves it alone. Delete that Certificate "
                "or rename the binding.",
            )
        )

    async def _issued_secret(
        self,
        binding: Mapping[str, Any],
        certificate: Mapping[str, Any],
        managed: ManagedCertificate,
        issuing: Mapping[str, Any] | None,
    ) -> Issued:
        namespace = certificate["metadata"]["namespace"]
        secret_name = managed.secret_name
        data = self.secrets.source_data(namespace, secret_name)
        if data is None:
            # Not in the watch's cache yet (or cert-manager has not applied the
            # secretTemplate's label yet): read it once, never label it ourselves.
            try:
                secret = await self.kube.get(SECRETS.path(namespace, secret_name))
            except NotFoundError:
                return Issued(
                    Verdict(
                        False,
                        Reason.SECRET_NOT_FOUND,
                        f"Certificate {namespace}/{certificate['metadata']['name']} is Ready but "
                        f"its Secret {secret_name} is not there yet",
                    )
                )
            data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        note = ""
        if issuing is not None and issuing.get("status") == "False" and issuing.get("reason"):
            # Ready stays True while the current certificate is good, even when
            # cert-manager failed to renew it: say so, once, without blocking the sync.
            note = f"cert-manager failed to renew it: {_said(issuing)}"
            previous = _previous_message(binding)
            if note not in previous:
                self.events.record(binding, "Warning", Reason.RENEWAL_FAILED, note)
        return Issued(Verdict(True, "Valid", ""), data=data, note=note)

    async def _why_not_ready(
        self,
        certificate: Mapping[str, Any],
        managed: ManagedCertificate,
        ready: Mapping[str, Any] | None,
        issuing: Mapping[str, Any] | None,
    ) -> Verdict:
        meta = certificate["metadata"]
        where = f"{meta['namespace']}/{meta['name']}"
        issuer = await self._issuer_problem(meta["namespace"], managed)
        if issuer is not None:
            return issuer
        generation = meta.get("generation")
        if issuing is not None and issuing.get("status") == "False" and issuing.get("reason"):
            status = certificate.get("status") or {}
            attempts = status.get("failedIssuanceAttempts")
            retry = f" (attempt {attempts}; cert-manager retries with backoff)" if attempts else ""
            return Verdict(
                False,
                Reason.ISSUING_FAILED,
                f"cert-manager could not issue Certificate {where}: {_said(issuing)}{retry}",
            )
        request = await self._current_request(certificate)
        if request is not None:
            request_ready = _condition(request, "Ready")
            reason = (request_ready or {}).get("reason")
            if reason in ("Failed", "Denied") and (request_ready or {}).get("status") == "False":
                return Verdict(
                    False,
                    Reason.REQUEST_FAILED if reason == "Failed" else Reason.REQUEST_DENIED,
                    f"CertificateRequest {meta['namespace']}/{request['metadata']['name']} for "
                    f"Certificate {where}: {_said(request_ready or {})}",
                )
        if issuing is not None and issuing.get("status") == "True":
            detail = ""
            if request is not None and _condition(request, "Ready") is not None:
                detail = (
                    f"; CertificateRequest {request['metadata']['name']}: "
                    f"{_said(_condition(request, 'Ready') or {})}"
                )
            return Verdict(
                False,
                Reason.ISSUING,
                f"cert-manager is issuing Certificate {where}: {_said(issuing)}{detail}",
                pending=True,
            )
        if ready is None:
            return Verdict(
                False,
                Reason.WAITING,
                f"waiting for cert-manager to report on Certificate {where}; if this lasts, "
                "check that cert-manager's controller is running",
                pending=True,
            )
        if not _current(ready, generation):
            return Verdict(
                False,
                Reason.WAITING,
                f"waiting for cert-manager to process generation {generation} of "
                f"Certificate {where}",
                pending=True,
            )
        return Verdict(
            False,
            Reason.NOT_READY,
            f"Certificate {where} is not Ready: {_said(ready)}",
        )

    async def _issuer_problem(self, namespace: str, managed: ManagedCertificate) -> Verdict | None:
        """Our own check of ``issuerRef`` for cert-manager's built-in kinds.

        cert-manager reports a missing issuer only on the CertificateRequest (as a
        ``Pending`` request) and only when it runs; this answers either way.
        """
        ref = managed.issuer_ref
        if ref.group != CERT_MANAGER_GROUP or ref.kind not in ("Issuer", "ClusterIssuer"):
            return None  # an external issuer: its own controller reports on the request
        cluster = ref.kind == "ClusterIssuer"
        path = CLUSTER_ISSUERS.path(name=ref.name) if cluster else ISSUERS.path(namespace, ref.name)
        described = f'{ref.kind} "{ref.name}"' + ("" if cluster else f" in namespace {namespace}")
        try:
            issuer = await self.kube.get(path)
        except NotFoundError:
            return Verdict(
                False,
                Reason.ISSUER_NOT_FOUND,
                f"{described} does not exist: spec.certificate.issuerRef must name an existing "
                f"issuer (cert-manager cannot issue {managed.secret_name} until it does)",
            )
        except ApiError as error:
            log.debug("cannot check issuer %s: %s", described, error)
            return None  # e.g. no RBAC to read issuers: cert-manager's conditions still tell
        ready = _condition(issuer, "Ready")
        if ready is not None and ready.get("status") == "False":
            return Verdict(
                False, Reason.ISSUER_NOT_READY, f"{described} is not ready: {_said(ready)}"
            )
        return None

    async def _current_request(self, certificate: Mapping[str, Any]) -> JSON | None:
        """The CertificateRequest of the revision being issued, if cert-manager made one."""
        meta = certificate["metadata"]
        uid = (meta.get("labels") or {}).get(BINDING_UID_LABEL)
        if not uid:
            return None
        wanted = str(int((certificate.get("status") or {}).get("revision") or 0) + 1)
        try:
            listing = await self.kube.get(
                CERTIFICATE_REQUESTS.path(meta["namespace"]),
                labelSelector=f"{BINDING_UID_LABEL}={uid}",
            )
        except ApiError as error:
            log.debug("cannot list CertificateRequests: %s", error)
            return None
        for request in listing.get("items") or ():
            annotations = request["metadata"].get("annotations") or {}
            if (
                annotations.get(CERTIFICATE_NAME_ANNOTATION) == meta["name"]
                and annotations.get(REVISION_ANNOTATION) == wanted
            ):
                found: JSON = request
                return found
        return None

    # ------------------------------------------------------------------ cleanup
    async def release(
        self, namespace: str, binding_name: str, uid: str, *, delete_secret: str | None
    ) -> None:
        """Delete the binding's Certificate (if ours) and, when asked, its issued Secret.

        The Secret is deleted only when it carries this binding's uid label (it came
        from our Certificate's ``secretTemplate``): never a stranger's Secret of the
        same name. Raises :class:`ApiError` on trouble; the caller retries.
        """
        name = certificate_name(binding_name)
        try:
            current: JSON | None = await self.kube.get(CERTIFICATES.path(namespace, name))
        except NotFoundError:
            current = None
        except ValueError:
            current = None  # cert-manager's API is not served (plain-text 404): nothing to do
        if current is not None and _owned_by(current, uid):
            self.guard()
            try:
                await self.kube.delete(
                    CERTIFICATES.path(namespace, name), uid=current["metadata"]["uid"]
                )
                log.info("deleted Certificate %s/%s", namespace, name)
            except NotFoundError:
                pass
            except ConflictError:
                pass  # replaced by someone else meanwhile: not ours any more
        if delete_secret is None:
            return
        try:
            secret = await self.kube.get(SECRETS.path(namespace, delete_secret))
        except NotFoundError:
            return
        if (secret["metadata"].get("labels") or {}).get(BINDING_UID_LABEL) != uid:
            return
        self.guard()
        try:
            await self.kube.delete(
                SECRETS.path(namespace, delete_secret), uid=secret["metadata"]["uid"]
            )
            log.info(
                "deleted issued Secret %s/%s (deletionPolicy Delete)", namespace, delete_secret
            )
        except (NotFoundError, ConflictError):
            return
        self.secrets.observe_delete(namespace, delete_secret)


def was_managed(binding: Mapping[str, Any]) -> bool:
    """Whether the binding's last status says its source was a managed Certificate."""
    source = (binding.get("status") or {}).get("source")
    return isinstance(source, str) and source.startswith(SOURCE_PREFIX)


def _previous_message(binding: Mapping[str, Any]) -> str:
    for condition in (binding.get("status") or {}).get("conditions") or ():
        if condition.get("type") == VALIDATED:
            return str(condition.get("message") or "")
    return ""


class _NotInstalledError(Exception):
    """The API server does not serve cert-manager's Certificates."""
