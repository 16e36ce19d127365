"""A HAND-WRITTEN FAKE of the Azure Key Vault certificates REST API, for tests only.

This is not Key Vault and not a Key Vault emulator: it is a small aiohttp server written
for CertAuto's tests, from the public REST API reference and from what the official
client (``azure-keyvault-certificates`` 4.x, ``azure.keyvault.certificates.aio``) sends
and parses. It is the last resort: DESIGN.md §5 planned the Lowkey Vault emulator, but
its app jar is not published on Maven Central (only its client and Testcontainers
modules are) and no other emulator can be installed here. Code must be written to Key
Vault's documented rules, not to this fake's behaviour.

The official async ``CertificateClient`` works against it unchanged, given
``verify_challenge_resource=False`` and ``connection_verify=<ca_path>``.

Implemented (any ``api-version`` of the form ``7.x`` or ``YYYY-MM-DD``, required):

* HTTPS on 127.0.0.1 with a throwaway CA (:attr:`FakeKeyVaultServer.ca_path`).
* The authentication challenge: a request without ``Authorization: Bearer …`` gets 401
  with ``WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>",
  resource="https://vault.azure.net"``; any bearer token is accepted.
* ``POST /certificates/{name}/import``: PKCS#12 (base64, optional ``pwd``) or PEM (per
  ``policy.secret_props.contentType``; the PEM text raw or base64-encoded; the key must
  be PKCS#8, as Key Vault requires); RSA and EC keys; the key must match one of the
  certificates, which becomes the leaf. Each import makes a new version (32 hex
  digits) holding ``x5t``, ``cer`` (leaf DER), tags, attributes (enabled, nbf, exp,
  created, updated, recoveryLevel ``Recoverable+Purgeable``, recoverableDays 90) and
  the certificate's policy (derived from the leaf and key, merged with the request's).
* ``GET /certificates/{name}[/{version}]``, ``GET /certificates/{name}/versions``,
  ``GET /certificates``, ``GET /certificates/{name}/policy``,
  ``PATCH /certificates/{name}[/{version}]`` (tags, enabled).
* Soft delete: ``DELETE /certificates/{name}`` returns a DeletedCertificateBundle
  (``recoveryId``, ``deletedDate``, ``scheduledPurgeDate``); the name then 404s with
  ``CertificateNotFound`` and an import of it gets 409 ``Conflict``
  (inner ``ObjectIsDeletedButRecoverable``). ``GET /deletedcertificates[/{name}]``,
  ``POST /deletedcertificates/{name}/recover`` (completes only after
  ``recover_delay_seconds``, so the client's poller has to poll ``GET /certificates/{name}``
  until it stops 404ing, as on the real vault), ``DELETE /deletedcertificates/{name}``
  (purge, 204). Deletion and purge can be made to lag the same way
  (``delete_delay_seconds``, ``purge_delay_seconds``; a name being purged gets 409
  ``ObjectIsBeingDeleted``).
* ``GET /secrets/{name}[/{version}]``: the certificate's backing secret, with the key,
  in the content type of the import: base64 PKCS#12 without a password, or PEM (PKCS#8
  key, then the leaf, then the chain). A disabled version gets 403 ``SecretDisabled``.
* Paging with ``maxresults`` (1-25, default 25) and ``nextLink``.
* Name rules ``^[0-9a-zA-Z-]{1,127}$`` (else 400 ``BadParameter``); at most 15 tags.
* Errors in Key Vault's shape ``{"error": {"code", "message"[, "innererror"]}}``.
* Call accounting (:attr:`~FakeKeyVaultServer.calls`, :meth:`~FakeKeyVaultServer.count`)
  and fault injection (:meth:`~FakeKeyVaultServer.fail_next`: 429 with ``Retry-After``
  and Key Vault's ``Throttled`` body, 503, or any status).

Knowingly laxer than Key Vault:

* Any bearer token is accepted; there is no access policy or RBAC (so never a 403 for
  permissions), no tenant check, no token expiry, no CAE claims challenge.
* Any well-formed api-version is accepted, and responses do not vary with it.
* The request ``policy`` is barely validated: ``key_props`` are derived from the
  imported key (a conflicting ``kty``/``key_size`` in the request is ignored, not
  rejected), and only ``exportable``, ``reuse_key``, ``lifetime_actions``, ``issuer``
  and ``secret_props`` are taken from it. No certificate-chain validation, no expiry
  check, no key size minimum. ``PATCH`` ignores a ``policy``.
* No quotas other than the throttling you inject; no request size limits beyond 16 MiB.
* Every other operation (create/merge/pending operations, issuers, contacts,
  backup/restore, keys) is not implemented and answers 501 ``NotImplemented``, which
  real Key Vault never does.

Knowingly stricter, or merely different:

* Versions are listed sorted by version id, not by creation time (Key Vault promises
  no order either, so do not rely on one).
* A name whose recovery has not completed yet 404s for reads and gets 409 ``Conflict``
  (inner ``ObjectIsBeingRecovered``) for an import; the real service's answer in that
  window is not documented.
* Error messages are close to, but not byte-for-byte, Key Vault's; match on the status
  and ``error.code`` (and ``innererror.code``), as client code should anyway.
* Key types other than RSA and EC (P-256, P-384, P-521, P-256K) are rejected with 400.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from certauto_core.testing.faults import CannedResponse, FaultPlan
from certauto_core.testing.keyvault._tls import ServerTls, make_server_tls

__all__ = [
    "CONTENT_TYPE_PEM",
    "CONTENT_TYPE_PKCS12",
    "FakeKeyVaultServer",
    "RecordedCall",
]

_log = logging.getLogger(__name__)

CONTENT_TYPE_PKCS12 = "application/x-pkcs12"
CONTENT_TYPE_PEM = "application/x-pem-file"
RECOVERY_LEVEL = "Recoverable+Purgeable"
RECOVERABLE_DAYS = 90
MAX_TAGS = 15
MAX_PAGE_SIZE = 25
DEFAULT_TENANT_ID = "00000000-0000-0000-0000-00000000c0de"

_NAME_RE = re.compile(r"[0-9a-zA-Z-]{1,127}")
_VERSION_RE = re.compile(r"[0-9a-zA-Z]{1,64}")
_API_VERSION_RE = re.compile(r"(\d+\.\d+|\d{4}-\d{2}-\d{2})(-preview(\.\d+)?)?")
_PEM_BLOCK_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_JSON = "application/json"
_EC_CURVES = {
    "secp256r1": "P-256",
    "secp384r1": "P-384",
    "secp521r1": "P-521",
    "secp256k1": "P-256K",
}
_KEY_USAGE_NAMES = (
    ("digital_signature", "digitalSignature"),
    ("content_commitment", "nonRepudiation"),
    ("key_encipherment", "keyEncipherment"),
    ("data_encipherment", "dataEncipherment"),
    ("key_agreement", "keyAgreement"),
    ("key_cert_sign", "keyCertSign"),
    ("crl_sign", "cRLSign"),
)
_NOT_FOUND_HELP = (
    "If you recently deleted this certificate you may be able to recover it using the "
    "correct recovery command. For help resolving this issue, please see "
    "https://go.microsoft.com/fwlink/?linkid=2125182"
)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


# -- errors -------------------------------------------------------------------------


class _KeyVaultError(Exception):
    def __init__(self, status: int, code: str, message: str, inner_code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner_code = inner_code


def _error_body(code: str, message: str, inner_code: str | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner_code is not None:
        error["innererror"] = {"code": inner_code}
    return json.dumps({"error": error}).encode()


def _bad_parameter(message: str) -> _KeyVaultError:
    return _KeyVaultError(400, "BadParameter", message)


def _certificate_not_found(name: str, version: str | None = None) -> _KeyVaultError:
    what = f"{name}/{version}" if version else name
    return _KeyVaultError(
        404,
        "CertificateNotFound",
        f"A certificate with (name/id) {what} was not found in this key vault. {_NOT_FOUND_HELP}",
    )


def _deleted_not_found(name: str) -> _KeyVaultError:
    return _KeyVaultError(404, "CertificateNotFound", f"Deleted Certificate not found: {name}")


def _secret_not_found(name: str, version: str | None = None) -> _KeyVaultError:
    what = f"{name}/{version}" if version else name
    return _KeyVaultError(
        404,
        "SecretNotFound",
        f"A secret with (name/id) {what} was not found in this key vault. {_NOT_FOUND_HELP}",
    )


# -- state --------------------------------------------------------------------------


class _State(Enum):
    ACTIVE = "active"
    DELETED = "deleted"
    PURGING = "purging"


@dataclass
class _Version:
    version: str
    key: PrivateKey
    leaf: x509.Certificate
    chain: list[x509.Certificate]
    content_type: str
    enabled: bool
    tags: dict[str, str] | None
    created: int
    updated: int
    preserve_cert_order: bool | None

    @property
    def cer(self) -> bytes:
        return self.leaf.public_bytes(serialization.Encoding.DER)

    @property
    def x5t(self) -> str:
        digest = hashlib.sha1(self.cer, usedforsecurity=False).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def attributes(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "nbf": int(self.leaf.not_valid_before_utc.timestamp()),
            "exp": int(self.leaf.not_valid_after_utc.timestamp()),
            "created": self.created,
            "updated": self.updated,
            "recoveryLevel": RECOVERY_LEVEL,
            "recoverableDays": RECOVERABLE_DAYS,
        }


@dataclass
class _Certificate:
    name: str
    policy: dict[str, Any]
    versions: dict[str, _Version] = field(default_factory=dict)
    latest: str = ""
    state: _State = _State.ACTIVE
    ready_at: float = 0.0
    """Monotonic time at which the last state change (recover, delete, purge) completes."""
    deleted_date: int = 0
    scheduled_purge_date: int = 0

    def latest_version(self) -> _Version:
        return self.versions[self.latest]


@dataclass
class RecordedCall:
    """One request that reached the fake vault."""

    method: str
    path: str
    api_version: str | None
    query: dict[str, str]
    authorized: bool
    """False for requests without a bearer token (answered with the 401 challenge)."""
    status: int = 0
    injected: bool = False
    """True if an injected fault answered it."""


# -- certificate parsing ------------------------------------------------------------


def _public_key_der(key: PrivateKey | x509.Certificate) -> bytes:
    public = key.public_key()
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_key(key: object) -> PrivateKey:
    if isinstance(key, rsa.RSAPrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _EC_CURVES:
        return key
    raise _bad_parameter(
        "The specified certificate's private key type is not supported. "
        "Supported key types are RSA and EC (P-256, P-384, P-521, P-256K)."
    )


def _decode_base64(value: str, what: str) -> bytes:
    compact = "".join(value.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_parameter(f"The specified {what} content is not valid base64.") from None


def _parse_pkcs12(value: str, password: str | None) -> tuple[PrivateKey, list[x509.Certificate]]:
    data = _decode_base64(value, "PKCS#12 X.509 certificate")
    candidates: list[bytes | None] = [password.encode()] if password else [None, b""]
    for candidate in candidates:
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, candidate)
        except ValueError:
            continue
        if key is None:
            raise _bad_parameter(
                "Private key is not specified in the specified X.509 PKCS#12 certificate "
                "content. Please specify private key in the X.509 PKCS#12 certificate content."
            )
        certs = ([cert] if cert is not None else []) + list(extra)
        return _check_key(key), certs
    raise _bad_parameter(
        "The specified PKCS#12 X.509 certificate content can not be read. Please check if "
        "certificate is in valid PKCS#12 format and the password is correct."
    )


def _parse_pem(value: str, password: str | None) -> tuple[PrivateKey, list[x509.Certificate]]:
    text = (
        value.encode()
        if value.lstrip().startswith("-----BEGIN")
        else _decode_base64(value, "PEM X.509 certificate")
    )
    invalid = _bad_parameter(
        "The specified PEM X.509 certificate content is in an unexpected format. "
        "Please check if certificate is in valid PEM format."
    )
    keys: list[PrivateKey] = []
    certs: list[x509.Certificate] = []
    for match in _PEM_BLOCK_RE.finditer(text):
        label = match.group(1).decode()
        block = match.group(0)
        try:
            if label == "CERTIFICATE":
                certs.append(x509.load_pem_x509_certificate(block))
            elif label == "PRIVATE KEY":
                keys.append(_check_key(serialization.load_pem_private_key(block, None)))
            elif label == "ENCRYPTED PRIVATE KEY":
                pwd = password.encode() if password else None
                keys.append(_check_key(serialization.load_pem_private_key(block, pwd)))
            elif label.endswith("PRIVATE KEY"):
                # PKCS#1 ("RSA PRIVATE KEY") and SEC1 ("EC PRIVATE KEY"): Key Vault only
                # accepts PKCS#8.
                raise _bad_parameter(
                    f"The specified PEM X.509 certificate content contains a '{label}' "
                    "block; only PKCS#8 private keys ('PRIVATE KEY') are supported."
                )
        except (ValueError, TypeError):
            raise invalid from None
    if not certs:
        raise invalid
    if len(keys) != 1:
        raise _bad_parameter(
            "Private key is not specified in the specified X.509 PEM certificate content. "
            "Please specify private key in the X.509 PEM certificate content."
            if not keys
            else "The specified PEM X.509 certificate content contains more than one private key."
        )
    return keys[0], certs


def _split_leaf(
    key: PrivateKey, certs: list[x509.Certificate], preserve_order: bool
) -> tuple[x509.Certificate, list[x509.Certificate]]:
    key_der = _public_key_der(key)
    for index, cert in enumerate(certs):
        if _public_key_der(cert) == key_der:
            if preserve_order:
                return cert, certs[:index] + certs[index + 1 :]
            return cert, [c for c in certs if c is not cert]
    raise _bad_parameter(
        "The specified X.509 certificate content is invalid: the private key does not "
        "match the public key of any certificate in it."
    )


def _derived_policy(
    key: PrivateKey, leaf: x509.Certificate, content_type: str, requested: Mapping[str, Any]
) -> dict[str, Any]:
    key_props: dict[str, Any] = {"exportable": True, "reuse_key": False}
    if isinstance(key, rsa.RSAPrivateKey):
        key_props.update(kty="RSA", key_size=key.key_size)
    else:
        key_props.update(kty="EC", crv=_EC_CURVES[key.curve.name])
    req_key_props = requested.get("key_props")
    if not isinstance(req_key_props, dict):
        req_key_props = {}
    for name in ("exportable", "reuse_key"):
        if isinstance(req_key_props.get(name), bool):
            key_props[name] = req_key_props[name]

    x509_props: dict[str, Any] = {
        "subject": leaf.subject.rfc4514_string(),
        "ekus": [],
        "key_usage": [],
    }
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = sans.get_values_for_type(x509.DNSName)
        if dns_names:
            x509_props["sans"] = {"dns_names": dns_names}
    except x509.ExtensionNotFound:
        pass
    try:
        ekus = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        x509_props["ekus"] = [oid.dotted_string for oid in ekus]
    except x509.ExtensionNotFound:
        pass
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        x509_props["key_usage"] = [wire for attr, wire in _KEY_USAGE_NAMES if getattr(usage, attr)]
    except x509.ExtensionNotFound:
        pass
    days = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days
    x509_props["validity_months"] = max(1, round(days / 30.4))

    lifetime_actions = requested.get("lifetime_actions")
    if not isinstance(lifetime_actions, list):
        lifetime_actions = [
            {"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "EmailContacts"}}
        ]
    issuer = requested.get("issuer")
    if not isinstance(issuer, dict) or not issuer.get("name"):
        issuer = {"name": "Unknown"}
    return {
        "key_props": key_props,
        "secret_props": {"contentType": content_type},
        "x509_props": x509_props,
        "lifetime_actions": lifetime_actions,
        "issuer": issuer,
    }


def _secret_value(version: _Version) -> str:
    if version.content_type == CONTENT_TYPE_PEM:
        parts = [
            version.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        ]
        parts += [
            c.public_bytes(serialization.Encoding.PEM) for c in [version.leaf, *version.chain]
        ]
        return b"".join(parts).decode()
    pfx = pkcs12.serialize_key_and_certificates(
        name=None,
        key=version.key,
        cert=version.leaf,
        cas=version.chain or None,
        encryption_algorithm=serialization.NoEncryption(),
    )
    return base64.b64encode(pfx).decode()


# -- the server ---------------------------------------------------------------------


_Handler = Callable[[web.Request, RecordedCall, re.Match[str]], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: _Handler


class FakeKeyVaultServer:
    """A hand-written fake of the Key Vault certificates REST API over HTTPS on 127.0.0.1.

    One vault per server (the vault is the host): :meth:`reset` empties it between
    tests. ``start``/``stop`` must run on the event loop that serves the requests; the
    blocking parts (key generation, file I/O) run in a worker thread.

    The delays are plain attributes a test may change; :meth:`reset` restores them.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_dir: Path | None = None,
        tenant_id: str = DEFAULT_TENANT_ID,
        recover_delay_seconds: float = 0.25,
        delete_delay_seconds: float = 0.0,
        purge_delay_seconds: float = 0.0,
        page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        self.host = host
        self._port = port
        self._tls_dir = tls_dir
        self._own_tls_dir: Path | None = None
        self._tls: ServerTls | None = None
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None
        self.tenant_id = tenant_id
        self._defaults = (
            recover_delay_seconds,
            delete_delay_seconds,
            purge_delay_seconds,
            page_size,
        )
        self.recover_delay_seconds = recover_delay_seconds
        self.delete_delay_seconds = delete_delay_seconds
        self.purge_delay_seconds = purge_delay_seconds
        self.page_size = page_size
        self.calls: list[RecordedCall] = []
        """Every request since the last reset, in arrival order."""
        self.faults: FaultPlan[RecordedCall] = FaultPlan()
        self.internal_errors: list[BaseException] = []
        """Exceptions raised by the fake itself (answered 500): a bug in the fake."""
        self._certificates: dict[str, _Certificate] = {}
        self._routes = self._make_routes()

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("FakeKeyVaultServer already started")
        tls_dir = self._tls_dir
        if tls_dir is None:
            tls_dir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="certauto-fake-kv-"))
            self._own_tls_dir = tls_dir
        tls = await asyncio.to_thread(make_server_tls, tls_dir, self.host)
        ssl_context = await asyncio.to_thread(tls.server_context)
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._port, ssl_context=ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._tls = tls
        self._runner = runner
        self._bound_port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        own, self._own_tls_dir = self._own_tls_dir, None
        if own is not None:
            await asyncio.to_thread(shutil.rmtree, own, True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("FakeKeyVaultServer not started")
        return self._bound_port

    @property
    def vault_url(self) -> str:
        """The vault's URL, e.g. ``https://127.0.0.1:43210``."""
        return f"https://{self.host}:{self.port}"

    @property
    def ca_path(self) -> Path:
        """PEM file of the CA that issued the server certificate: trust it in the client."""
        if self._tls is None:
            raise RuntimeError("FakeKeyVaultServer not started")
        return self._tls.ca_path

    # -- test controls ----------------------------------------------------------------

    def reset(self) -> None:
        """Empty the vault, the call log and the faults; restore the default delays."""
        self._certificates.clear()
        self.calls.clear()
        self.faults.clear()
        self.internal_errors.clear()
        (
            self.recover_delay_seconds,
            self.delete_delay_seconds,
            self.purge_delay_seconds,
            self.page_size,
        ) = self._defaults

    def count(
        self,
        method: str | None = None,
        path_regex: str | None = None,
        *,
        include_unauthorized: bool = False,
        include_injected: bool = True,
    ) -> int:
        """How many requests matched *method* (any if None) and *path_regex* (matched
        against the whole path, any if None).

        The bodiless requests that only elicit the 401 challenge are left out unless
        *include_unauthorized*: whether a client sends one depends on azure-core's
        process-wide challenge cache, not on the code under test. Requests answered by
        an injected fault are counted unless *include_injected* is false.
        """
        pattern = re.compile(path_regex) if path_regex is not None else None
        return sum(
            1
            for call in self.calls
            if (method is None or call.method == method.upper())
            and (pattern is None or pattern.fullmatch(call.path))
            and (include_unauthorized or call.authorized)
            and (include_injected or not call.injected)
        )

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 429,
        retry_after_seconds: float | None = 1.0,
        method: str | None = None,
        path_regex: str | None = None,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next *count* authorized requests matching *method* and
        *path_regex* (any, if None) with *status* instead of serving them.

        429 gets Key Vault's ``Throttled`` error body, 503 ``ServiceUnavailable``;
        ``Retry-After`` is sent when *retry_after_seconds* is not None (an integer
        number of seconds if it is whole, as Key Vault sends).
        """
        if code is None:
            code = {429: "Throttled", 503: "ServiceUnavailable"}.get(status, "InternalServerError")
        if message is None:
            if status == 429:
                after = retry_after_seconds if retry_after_seconds is not None else 1
                message = (
                    "Request was not processed because too many requests were received. "
                    f"Reason: A generic throttling limit was reached. Retry after {after} seconds."
                )
            elif status == 503:
                message = "The service is temporarily unavailable. Please retry."
            else:
                message = f"Injected fault {status}."
        headers: dict[str, str] = {}
        if retry_after_seconds is not None:
            headers["Retry-After"] = (
                str(int(retry_after_seconds))
                if float(retry_after_seconds).is_integer()
                else str(retry_after_seconds)
            )
        response = CannedResponse(
            status=status, body=_error_body(code, message), content_type=_JSON, headers=headers
        )
        method_upper = method.upper() if method is not None else None
        pattern = re.compile(path_regex) if path_regex is not None else None

        def matches(call: RecordedCall) -> bool:
            return (method_upper is None or call.method == method_upper) and (
                pattern is None or pattern.fullmatch(call.path) is not None
            )

        self.faults.add(matches, count, response)

    def state_of(self, name: str) -> str | None:
        """``"active"``, ``"recovering"``, ``"deleting"``, ``"deleted"``, ``"purging"``,
        or None if the vault has no such name."""
        cert = self._lookup(name)
        if cert is None:
            return None
        pending = time.monotonic() < cert.ready_at
        if cert.state is _State.ACTIVE:
            return "recovering" if pending else "active"
        if cert.state is _State.DELETED:
            return "deleting" if pending else "deleted"
        return "purging"

    # -- HTTP plumbing ----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        authorized = scheme.lower() == "bearer" and bool(token.strip())
        call = RecordedCall(
            method=request.method.upper(),
            path=request.path,
            api_version=request.query.get("api-version"),
            query=dict(request.query),
            authorized=authorized,
        )
        self.calls.append(call)
        response = await self._respond(request, call)
        call.status = response.status
        response.headers["x-ms-request-id"] = str(uuid.uuid4())
        response.headers["x-ms-keyvault-service-version"] = "1.9.0.0 (certauto fake)"
        return response

    async def _respond(self, request: web.Request, call: RecordedCall) -> web.Response:
        if not call.authorized:
            challenge = (
                f'Bearer authorization="https://login.microsoftonline.com/{self.tenant_id}", '
                'resource="https://vault.azure.net"'
            )
            return web.Response(
                status=401,
                body=_error_body(
                    "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token."
                ),
                content_type=_JSON,
                headers={"WWW-Authenticate": challenge},
            )
        try:
            self._check_api_version(call.api_version)
            canned = self.faults.take(call)
            if canned is not None:
                call.injected = True
                return web.Response(
                    status=canned.status,
                    body=canned.body,
                    content_type=canned.content_type,
                    headers=dict(canned.headers),
                )
            for route in self._routes:
                if route.method != call.method:
                    continue
                match = route.pattern.fullmatch(call.path)
                if match is not None:
                    result = await route.handler(request, call, match)
                    if result is None:
                        return web.Response(status=204)
                    return web.Response(
                        status=200,
                        body=json.dumps(result).encode(),
                        content_type=_JSON,
                    )
            raise _KeyVaultError(
                501,
                "NotImplemented",
                f"The CertAuto fake Key Vault does not implement {call.method} {call.path}.",
            )
        except _KeyVaultError as err:
            return web.Response(
                status=err.status,
                body=_error_body(err.code, err.message, err.inner_code),
                content_type=_JSON,
            )
        except Exception as exc:
            _log.exception("fake Key Vault failed on %s %s", call.method, call.path)
            self.internal_errors.append(exc)
            return web.Response(
                status=500,
                body=_error_body("InternalError", f"fake Key Vault bug: {exc!r}"),
                content_type=_JSON,
            )

    @staticmethod
    def _check_api_version(api_version: str | None) -> None:
        if not api_version:
            raise _bad_parameter(
                "The api-version query parameter (?api-version=) is required for all requests."
            )
        if not _API_VERSION_RE.fullmatch(api_version):
            raise _bad_parameter(f"The specified version ({api_version}) is not recognized.")

    def _make_routes(self) -> list[_Route]:
        name = r"(?P<name>[^/]+)"
        version = r"(?:/(?P<version>[^/]*))?"
        table: list[tuple[str, str, _Handler]] = [
            ("GET", r"/certificates/?", self._list_certificates),
            ("GET", rf"/certificates/{name}/versions", self._list_versions),
            ("POST", rf"/certificates/{name}/import", self._import),
            ("GET", rf"/certificates/{name}/policy", self._get_policy),
            ("GET", rf"/certificates/{name}/pending", self._get_pending),
            ("GET", rf"/certificates/(?!(?:contacts|issuers)(?:/|$)){name}{version}", self._get),
            (
                "PATCH",
                rf"/certificates/(?!(?:contacts|issuers)(?:/|$)){name}{version}",
                self._update,
            ),
            ("DELETE", rf"/certificates/(?!(?:contacts|issuers)(?:/|$)){name}", self._delete),
            ("GET", r"/deletedcertificates/?", self._list_deleted),
            ("GET", rf"/deletedcertificates/{name}", self._get_deleted),
            ("DELETE", rf"/deletedcertificates/{name}", self._purge),
            ("POST", rf"/deletedcertificates/{name}/recover", self._recover),
            ("GET", rf"/secrets/{name}{version}", self._get_secret),
        ]
        return [_Route(m, re.compile(p), h) for m, p, h in table]

    # -- helpers ----------------------------------------------------------------------

    @staticmethod
    def _name(match: re.Match[str]) -> str:
        name = match.group("name")
        if not _NAME_RE.fullmatch(name):
            raise _bad_parameter(f"The request URI contains an invalid name: {name}")
        return name

    @staticmethod
    def _version_of(match: re.Match[str]) -> str | None:
        version = match.groupdict().get("version") or None
        if version is not None and not _VERSION_RE.fullmatch(version):
            raise _bad_parameter(f"The request URI contains an invalid version: {version}")
        return version

    @staticmethod
    async def _json_body(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw:
            raise _bad_parameter("The request body is empty.")
        try:
            body = json.loads(raw)
        except ValueError:
            raise _bad_parameter("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise _bad_parameter("The request body must be a JSON object.")
        return body

    def _lookup(self, name: str) -> _Certificate | None:
        cert = self._certificates.get(name.lower())  # Key Vault names are case-insensitive
        if cert is not None and cert.state is _State.PURGING and time.monotonic() >= cert.ready_at:
            del self._certificates[name.lower()]
            return None
        return cert

    def _active(self, name: str) -> _Certificate | None:
        cert = self._lookup(name)
        if cert is None or cert.state is not _State.ACTIVE or time.monotonic() < cert.ready_at:
            return None
        return cert

    def _deleted(self, name: str) -> _Certificate | None:
        cert = self._lookup(name)
        if cert is None or cert.state is not _State.DELETED or time.monotonic() < cert.ready_at:
            return None
        return cert

    def _id(self, collection: str, name: str, version: str | None = None) -> str:
        base = f"{self.vault_url}/{collection}/{name}"
        return f"{base}/{version}" if version else base

    def _policy_json(self, cert: _Certificate) -> dict[str, Any]:
        return {"id": f"{self._id('certificates', cert.name)}/policy", **cert.policy}

    def _bundle(self, cert: _Certificate, version: _Version) -> dict[str, Any]:
        bundle: dict[str, Any] = {
            "id": self._id("certificates", cert.name, version.version),
            "kid": self._id("keys", cert.name, version.version),
            "sid": self._id("secrets", cert.name, version.version),
            "x5t": version.x5t,
            "cer": base64.b64encode(version.cer).decode(),
            "attributes": version.attributes(),
            "policy": self._policy_json(cert),
        }
        if version.tags is not None:
            bundle["tags"] = dict(version.tags)
        if version.preserve_cert_order is not None:
            bundle["preserveCertOrder"] = version.preserve_cert_order
        return bundle

    def _deleted_fields(self, cert: _Certificate) -> dict[str, Any]:
        return {
            "recoveryId": self._id("deletedcertificates", cert.name),
            "deletedDate": cert.deleted_date,
            "scheduledPurgeDate": cert.scheduled_purge_date,
        }

    def _item(self, cert: _Certificate, version: _Version, *, versioned: bool) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": self._id("certificates", cert.name, version.version if versioned else None),
            "attributes": version.attributes(),
            "x5t": version.x5t,
        }
        if version.tags is not None:
            item["tags"] = dict(version.tags)
        return item

    def _page(self, call: RecordedCall, items: list[dict[str, Any]]) -> dict[str, Any]:
        raw_max = call.query.get("maxresults")
        size = self.page_size
        if raw_max is not None:
            try:
                size = int(raw_max)
            except ValueError:
                size = 0
            if not 1 <= size <= MAX_PAGE_SIZE:
                raise _bad_parameter(
                    f"invalid maxresults {raw_max}: it must be between 1 and {MAX_PAGE_SIZE}"
                )
        raw_skip = call.query.get("$skiptoken", "0")
        if not raw_skip.isdigit():
            raise _bad_parameter(f"Invalid $skiptoken {raw_skip}")
        start = int(raw_skip)
        page = items[start : start + size]
        next_link = None
        if start + size < len(items):
            next_link = (
                f"{self.vault_url}{call.path}?api-version={call.api_version}"
                f"&$skiptoken={start + size}&maxresults={size}"
            )
        return {"value": page, "nextLink": next_link}

    # -- handlers ---------------------------------------------------------------------

    async def _import(
        self, request: web.Request, call: RecordedCall, match: re.Match[str]
    ) -> dict[str, Any]:
        name = self._name(match)
        existing = self._lookup(name)
        if existing is not None:
            if existing.state is _State.DELETED:
                raise _KeyVaultError(
                    409,
                    "Conflict",
                    f"Certificate {name} is currently in a deleted but recoverable state, and "
                    "its name cannot be reused; in this state, the certificate can only be "
                    "recovered or purged.",
                    "ObjectIsDeletedButRecoverable",
                )
            if existing.state is _State.PURGING:
                raise _KeyVaultError(
                    409,
                    "Conflict",
                    f"Certificate {name} is currently being deleted.",
                    "ObjectIsBeingDeleted",
                )
            if time.monotonic() < existing.ready_at:
                raise _KeyVaultError(
                    409,
                    "Conflict",
                    f"Certificate {name} is currently being recovered.",
                    "ObjectIsBeingRecovered",
                )
        body = await self._json_body(request)
        value = body.get("value")
        if not isinstance(value, str) or not value.strip():
            raise _bad_parameter("Property 'value' is required and must be a non-empty string.")
        password = body.get("pwd")
        if password is not None and not isinstance(password, str):
            raise _bad_parameter("Property 'pwd' must be a string.")
        requested_policy = body.get("policy") or {}
        if not isinstance(requested_policy, dict):
            raise _bad_parameter("Property 'policy' must be an object.")
        attributes = body.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise _bad_parameter("Property 'attributes' must be an object.")
        tags = self._parse_tags(body.get("tags"))
        preserve = body.get("preserveCertOrder")
        if preserve is not None and not isinstance(preserve, bool):
            raise _bad_parameter("Property 'preserveCertOrder' must be a boolean.")

        secret_props = requested_policy.get("secret_props") or {}
        content_type = secret_props.get("contentType") if isinstance(secret_props, dict) else None
        if content_type is None and existing is not None:
            content_type = existing.policy["secret_props"]["contentType"]
        content_type = content_type or CONTENT_TYPE_PKCS12
        if content_type == CONTENT_TYPE_PKCS12:
            key, certs = _parse_pkcs12(value, password)
        elif content_type == CONTENT_TYPE_PEM:
            key, certs = _parse_pem(value, password)
        else:
            raise _bad_parameter(
                f"Property policy.secret_props.contentType has invalid value {content_type!r}: "
                f"expected '{CONTENT_TYPE_PKCS12}' or '{CONTENT_TYPE_PEM}'."
            )
        leaf, chain = _split_leaf(key, certs, bool(preserve))
        enabled = attributes.get("enabled", True)
        if not isinstance(enabled, bool):
            raise _bad_parameter("Property 'attributes.enabled' must be a boolean.")

        now = int(time.time())
        policy = _derived_policy(key, leaf, content_type, requested_policy)
        policy["attributes"] = {"enabled": True, "created": now, "updated": now}
        if existing is not None:
            policy["attributes"]["created"] = existing.policy["attributes"]["created"]
            cert = existing
            cert.policy = policy
        else:
            cert = _Certificate(name=name, policy=policy)
            self._certificates[name.lower()] = cert
        version = _Version(
            version=uuid.uuid4().hex,
            key=key,
            leaf=leaf,
            chain=chain,
            content_type=content_type,
            enabled=enabled,
            tags=tags,
            created=now,
            updated=now,
            preserve_cert_order=preserve,
        )
        cert.versions[version.version] = version
        cert.latest = version.version
        return self._bundle(cert, version)

    @staticmethod
    def _parse_tags(tags: object) -> dict[str, str] | None:
        if tags is None:
            return None
        if not isinstance(tags, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
        ):
            raise _bad_parameter("Property 'tags' must be an object of string values.")
        if len(tags) > MAX_TAGS:
            raise _bad_parameter(f"The number of tags exceeds the maximum of {MAX_TAGS}.")
        for key, val in tags.items():
            if len(key) > 512 or len(val) > 256:
                raise _bad_parameter(
                    "Tag names may have at most 512 characters and values at most 256."
                )
        return dict(tags)

    def _resolve(self, match: re.Match[str]) -> tuple[_Certificate, _Version]:
        name = self._name(match)
        version_id = self._version_of(match)
        cert = self._active(name)
        if cert is None:
            raise _certificate_not_found(name, version_id)
        if version_id is None:
            return cert, cert.latest_version()
        version = cert.versions.get(version_id)
        if version is None:
            raise _certificate_not_found(name, version_id)
        return cert, version

    async def _get(
        self, request: web.Request, call: RecordedCall, match: re.Match[str]
    ) -> dict[str, Any]:
        cert, version = self._resolve(match)
        return self._bundle(cert, version)

    async def _update(
        self, request: web.Request, call: RecordedCall, match: re.Match[str]
    ) -> dict[str, Any]:
        cert, version = self._resolve(match)
        body = await self._json_body(request)
        attributes = body.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise _bad_parameter("Property 'attributes' must be an object.")
        enabled = attributes.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            raise _bad_parameter("Property 'attributes.enabled' must be a boolean.")
        tags = self._parse_tags(body.get("tags"))
        if enabled is not None:
            version.enabled = enabled
        if "tags" in body and tags is not None:
            version.tags = tags
        version.updated = int(time.time())
        return self._bundle(cert, version)

    async def _get_policy(
        self, request: web.Request, call: RecordedCall, match: re.Match[str]
    ) -> dict[str, Any]:
        name = self._name(match)
        cert = self._active(name)
        if cert is None:
            raise _certificate_not_found(name)
        return self._policy_json(cert)

    async def _get_pending(
        self, request: web.Request, call: RecordedCall, match: re.Match[str]
    ) -> dict[str, Any]:
        name = self._name(match)
        raise _KeyVaultError(404, "CertificateNotFound", f"Pending certificate not found: {name}")

    async def _list_certificates(
        self, request: web.Request, call: RecordedCall, match: re.Match[str]
    ) -> dict[str, Any]:
        items = [
            self._item(cert, cert.latest_version(), versioned=False)
            for key in sorted(self._certificates)
            if (cert := self._active(key)) is not None
        ]
        return self._page(call, items)

    async def _list_versions(
        self, request: web.Request, call: RecordedCall, match: re.Match[str]
    ) -> dict[str, Any]:
        name = self._name(match)
        cert = self._active(name)
        if cert is None:
            # Key Vault answers an empty list for an unknown name.
            return self._page(call, [])
        items = [self._item(cert, cert.versions[v], versioned=True) for v in sorted(cert.versions)]
        return self._page(call, items)

    async def _delete(
        self, request: web.Request, call: RecordedCall, match: re.Match[str]
    ) -> dict[str, Any]:
        name = self._name(match)
        cert = self._active(name)
        if cert is None:
            raise _certificate_not_found(name)
        now = time.time()
        cert.state = _State.DELETED
        cert.ready_at = time.monotonic() + self.delete_delay_seconds
        cert.deleted_date = int(now)
        cert.scheduled_purge_date = int(now) + RECOVERABLE_DAYS * 86400
        return {**self._bundle(cert, cert.latest_version()), **self._deleted_fields(cert)}

    async def _get_deleted(
        self, request: web.Request, call: RecordedCall, match: re.Match[str]
    ) -> dict[str, Any]:
        name = self._name(match)
        cert = self._deleted(name)
        if cert is None:
            raise _deleted_not_found(name)
        return {**self._bundle(cert, cert.latest_version()), **self._deleted_fields(cert)}

    async def _list_deleted(
        self, request: web.Request, call: RecordedCall, match: re.Match[str]
    ) -> dict[str, Any]:
        items = [
            {
                **self._item(cert, cert.latest_version(), versioned=False),
                **self._deleted_fields(cert),
            }
            for key in sorted(self._certificates)
            if (cert := self._deleted(key)) is not None
        ]
        return self._page(call, items)

    async def _recover(
        self, request: web.Request, call: RecordedCall, match: re.Match[str]
    ) -> dict[str, Any]:
        name = self._name(match)
        cert = self._deleted(name)
        if cert is None:
            raise _deleted_not_found(name)
        cert.state = _State.ACTIVE
        cert.ready_at = time.monotonic() + self.recover_delay_seconds
        cert.deleted_date = cert.scheduled_purge_date = 0
        return self._bundle(cert, cert.latest_version())

    async def _purge(self, request: web.Request, call: RecordedCall, match: re.Match[str]) -> None:
        name = self._name(match)
        cert = self._deleted(name)
        if cert is None:
            raise _deleted_not_found(name)
        if self.purge_delay_seconds > 0:
            cert.state = _State.PURGING
            cert.ready_at = time.monotonic() + self.purge_delay_seconds
        else:
            del self._certificates[name.lower()]

    async def _get_secret(
        self, request: web.Request, call: RecordedCall, match: re.Match[str]
    ) -> dict[str, Any]:
        name = self._name(match)
        version_id = self._version_of(match)
        cert = self._active(name)
        version = None
        if cert is not None:
            version = cert.versions.get(version_id) if version_id else cert.latest_version()
        if cert is None or version is None:
            raise _secret_not_found(name, version_id)
        if not version.enabled:
            raise _KeyVaultError(
                403,
                "Forbidden",
                "Operation get is not allowed on a disabled secret.",
                "SecretDisabled",
            )
        secret: dict[str, Any] = {
            "value": _secret_value(version),
            "contentType": version.content_type,
            "id": self._id("secrets", cert.name, version.version),
            "kid": self._id("keys", cert.name, version.version),
            "managed": True,
            "attributes": version.attributes(),
        }
        if version.tags is not None:
            secret["tags"] = dict(version.tags)
        return secret
