"""The ``azure-key-vault`` destination: one Key Vault certificate per destination entry.

How each contract method maps onto Key Vault (see the README for the user's view):

* ``observe``: ``GET /certificates/{name}`` (the current version), and only when
  that 404s ``GET /deletedcertificates/{name}``. The fingerprint is the SHA-256
  of the stored leaf (``cer``), never taken from a tag. A certificate of that
  name not tagged for this binding's entry raises :class:`ConflictError`.
* ``publish``: observes again, then resolves a soft-deleted name per
  ``onSoftDeleted``, then imports a new version only when the current one does
  not already hold the certificate (a repeated publish only fixes tags).
  Imports are PKCS#12 (a one-time password, legacy SHA-1/3DES encryption that
  every Key Vault front end accepts) or PEM, the key always PKCS#8, with the
  full chain.
* ``retract``: with ``delete`` deletes the certificate (waiting for Key Vault's
  delete operation) and purges it when ``purgeOnDelete``; otherwise leaves it.

Key Vault's own retries are off (``retry_total=0``): the core owns retries, so a
429 reaches it at once with the server's ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import secrets
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeVar

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.keyvault.certificates import (
    CertificateContentType,
    CertificatePolicy,
    DeletedCertificate,
    KeyCurveName,
    KeyType,
    KeyVaultCertificate,
    WellKnownIssuerNames,
)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12

from certauto_akv.config import AkvConfig, ContentType, OnSoftDeleted, is_valid_certificate_name
from certauto_akv.credentials import CredentialFactory, default_credential_factory
from certauto_akv.errors import inner_error_code, translate
from certauto_akv.sessions import Session, SessionPool
from certauto_akv.tags import (
    CONTENT_HASH_TAG,
    FINGERPRINT_TAG,
    OWN_TAGS,
    Ownership,
    describe_owner,
    desired_tags,
    ownership,
)
from certauto_core.certs.material import CertificateMaterial
from certauto_core.plugins.contract import (
    BindingRef,
    Observation,
    PluginContext,
    PublishResult,
    RetractResult,
    Target,
)
from certauto_core.plugins.errors import ConflictError, PermanentError

__all__ = ["DEFAULT_CLIENT_OPTIONS", "AkvDestination", "AkvSettings"]

T = TypeVar("T")

DEFAULT_CLIENT_OPTIONS: Final[Mapping[str, Any]] = {
    "retry_total": 0,
    "connection_timeout": 10,
    "read_timeout": 60,
}
"""azure-core options of every client: no SDK retries (the core owns them), bounded sockets."""

RSA_KEY_SIZES: Final = (2048, 3072, 4096)
EC_CURVES: Final[Mapping[str, KeyCurveName]] = {
    "secp256r1": KeyCurveName.p_256,
    "secp384r1": KeyCurveName.p_384,
    "secp521r1": KeyCurveName.p_521,
}
_PFX_KDF_ROUNDS: Final = 2048
_EXTERNAL_ID = re.compile(
    r"(?P<vault>https://[^/?#]+)/certificates/(?P<name>[0-9a-zA-Z-]{1,127})(?:/(?P<version>[0-9a-zA-Z]+))?/?"
)


@dataclass(frozen=True)
class AkvSettings:
    """Process-level settings of the destination: transport and timing, never per binding.

    Not part of the user's ``config``. Production uses the defaults; tests and
    embedders pass their own through :func:`certauto_akv.plugin.destination_type`.
    """

    credential_factory: CredentialFactory = default_credential_factory
    """Builds each credential (see :mod:`certauto_akv.credentials`)."""
    client_options: Mapping[str, Any] = field(default_factory=dict)
    """Extra azure-core client options, over :data:`DEFAULT_CLIENT_OPTIONS`
    (``connection_verify``, ``verify_challenge_resource``, ``transport``...)."""
    polling_interval: float = 2.0
    """Seconds between polls of Key Vault's long-running operations."""
    operation_timeout: float = 120.0
    """How long to wait for a recover, delete or purge to finish before retrying later."""
    request_timeout: float = 60.0
    """Upper bound of one Key Vault call."""
    secret_ttl: float = 300.0
    """How long a ``ClientSecret`` Secret's content is trusted before it is read again."""


@dataclass(frozen=True)
class _Found:
    certificate: KeyVaultCertificate | None = None
    deleted: DeletedCertificate | None = None


def _subject(name: str, vault_url: str) -> str:
    return f"certificate {name!r} in {vault_url}"


def _fingerprint(certificate: KeyVaultCertificate) -> str | None:
    cer = certificate.cer
    return hashlib.sha256(bytes(cer)).hexdigest() if cer else None


def _version(certificate: KeyVaultCertificate) -> str:
    properties = certificate.properties
    version = properties.version if properties is not None else None
    return version or "?"


def _tags(certificate: KeyVaultCertificate | DeletedCertificate) -> dict[str, str]:
    properties = certificate.properties
    return dict(properties.tags or {}) if properties is not None else {}


def _expires(certificate: KeyVaultCertificate) -> datetime | None:
    return certificate.properties.expires_on if certificate.properties else None


def _user_tags(tags: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in tags.items() if name not in OWN_TAGS}


def _content_type(certificate: KeyVaultCertificate) -> str | None:
    policy = certificate.policy
    if policy is None or policy.content_type is None:
        return None
    return str(getattr(policy.content_type, "value", policy.content_type))


def _policy(material: CertificateMaterial, content_type: ContentType) -> CertificatePolicy:
    """The import's policy: content type and key properties matching the material.

    Key properties are given so that a renewal that changes the key type (RSA to
    ECDSA) replaces the policy instead of contradicting it.
    """
    kv_content_type = (
        CertificateContentType.pkcs12
        if content_type is ContentType.PKCS12
        else CertificateContentType.pem
    )
    key = material.private_key
    if isinstance(key, rsa.RSAPrivateKey):
        return CertificatePolicy(
            issuer_name=WellKnownIssuerNames.unknown,
            content_type=kv_content_type,
            exportable=True,
            reuse_key=False,
            key_type=KeyType.rsa,
            key_size=key.key_size,
        )
    return CertificatePolicy(
        issuer_name=WellKnownIssuerNames.unknown,
        content_type=kv_content_type,
        exportable=True,
        reuse_key=False,
        key_type=KeyType.ec,
        key_curve_name=EC_CURVES[key.curve.name],
    )


def _pkcs12(material: CertificateMaterial, password: bytes) -> bytes:
    """Key, leaf and full chain as a password-protected PKCS#12.

    The password is random and used once, on a TLS connection, so the PBE
    strength does not matter; what matters is that Key Vault reads it, and
    SHA-1/3DES (what ``openssl pkcs12 -legacy`` writes) is the one encryption
    every Key Vault front end is known to accept (AES-256 PFX imports have been
    refused). An unprotected PKCS#12 has no MAC, which some readers reject too.
    """
    encryption = (
        PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(_PFX_KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())  # noqa: S303 - PKCS#12 MAC for compatibility, see docstring
        .build(password)
    )
    return pkcs12.serialize_key_and_certificates(
        None, material.private_key, material.leaf, list(material.chain) or None, encryption
    )


def _pem(material: CertificateMaterial) -> bytes:
    """PKCS#8 key, then the leaf, then its chain: Key Vault's PEM import format."""
    return material.private_key_pem_pkcs8() + material.certificate_pem()


class AkvDestination:
    """Imports each binding's certificate into Azure Key Vault (one instance per process)."""

    def __init__(self, context: PluginContext, settings: AkvSettings | None = None) -> None:
        self._settings = settings or AkvSettings()
        self._log = context.logger
        self._pool = SessionPool(
            context.kube,
            self._settings.credential_factory,
            {**DEFAULT_CLIENT_OPTIONS, **self._settings.client_options},
            secret_ttl=self._settings.secret_ttl,
            logger=context.logger,
        )

    # -- contract ---------------------------------------------------------------------

    async def check_material(self, material: CertificateMaterial, target: Target) -> None:
        self._config(target)
        key = material.private_key
        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size not in RSA_KEY_SIZES:
                raise PermanentError(
                    f"Key Vault accepts RSA keys of 2048, 3072 or 4096 bits; this key has "
                    f"{key.key_size} bits"
                )
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            if key.curve.name not in EC_CURVES:
                raise PermanentError(
                    "Key Vault accepts ECDSA keys on P-256, P-384 or P-521 only; "
                    f"this key is on {key.curve.name}"
                )
        else:  # pragma: no cover - CertificateMaterial admits RSA and ECDSA only
            raise PermanentError(f"Key Vault cannot store a {type(key).__name__} key")

    async def observe(self, target: Target) -> Observation:
        config = self._config(target)
        binding = target.binding
        name = config.name_for(binding)
        subject = _subject(name, config.vault_url)
        async with self._pool.lease(config, binding.namespace) as session:
            found = await self._locate(session, name, subject)
        if found.certificate is not None:
            self._require_ours(_tags(found.certificate), binding, subject)
            return self._observation(found.certificate, config)
        if found.deleted is not None:
            self._require_ours(_tags(found.deleted), binding, subject, soft_deleted=True)
            return Observation(
                fingerprint=None,
                drift=f"{subject} is soft-deleted (onSoftDeleted: {config.on_soft_deleted})",
            )
        return Observation(fingerprint=None)

    async def publish(self, material: CertificateMaterial, target: Target) -> PublishResult:
        config = self._config(target)
        binding = target.binding
        name = config.name_for(binding)
        subject = _subject(name, config.vault_url)
        tags = desired_tags(binding, material.fingerprint, material.content_hash, config.tags)
        writes = 0
        resolved: OnSoftDeleted | None = None
        async with self._pool.lease(config, binding.namespace) as session:
            found = await self._locate(session, name, subject)
            if found.certificate is None and found.deleted is not None:
                self._require_ours(_tags(found.deleted), binding, subject, soft_deleted=True)
                recovered = await self._resolve_soft_deleted(session, config, name, found.deleted)
                writes += 1
                resolved = config.on_soft_deleted
                found = _Found(certificate=recovered)
            current = found.certificate
            if current is not None:
                self._require_ours(_tags(current), binding, subject)
                if self._holds(current, material, config):
                    message, retagged = await self._retag(session, current, name, subject, tags)
                    if resolved is OnSoftDeleted.RECOVER:
                        message = f"recovered the soft-deleted certificate; {message}"
                    return PublishResult(
                        fingerprint=material.fingerprint,
                        external_id=current.id,
                        not_after=_expires(current),
                        message=message,
                        writes=writes + retagged,
                    )
            imported = await self._import(
                session,
                config,
                name,
                subject,
                material,
                tags,
                after_purge=resolved is OnSoftDeleted.PURGE,
            )
            writes += 1
        if _fingerprint(imported) != material.fingerprint:
            raise PermanentError(
                f"Key Vault stored another leaf than the one imported into {subject}: "
                "check that the chain holds the leaf once"
            )
        note = ""
        if resolved is OnSoftDeleted.RECOVER:
            note = " after recovering the soft-deleted certificate"
        elif resolved is OnSoftDeleted.PURGE:
            note = " after purging the soft-deleted certificate"
        return PublishResult(
            fingerprint=material.fingerprint,
            external_id=imported.id,
            not_after=_expires(imported),
            message=f"imported as version {_version(imported)}{note}",
            writes=writes,
        )

    async def retract(self, target: Target, *, delete: bool) -> RetractResult:
        config = target.config
        if config is None:
            config = self._config_from_previous(target)
            if config is None:
                return RetractResult(
                    removed=False,
                    message="the entry's config is gone and status recorded no externalID, "
                    "so its Key Vault certificate (if any) was left in place",
                )
        if not isinstance(config, AkvConfig):
            raise PermanentError("azure-key-vault got a config of another destination type")
        binding = target.binding
        name = config.name_for(binding)
        subject = _subject(name, config.vault_url)
        if not delete:
            return RetractResult(removed=False, message=f"{subject} left in place (Retain)")
        async with self._pool.lease(config, binding.namespace) as session:
            found = await self._locate(session, name, subject)
            if found.certificate is not None:
                tags = _tags(found.certificate)
                if ownership(tags, binding) is not Ownership.OURS:
                    return RetractResult(
                        removed=True,
                        message=f"{subject} is {describe_owner(tags)}; left untouched",
                    )
                deleted = await self._delete(session, name, subject)
                if config.purge_on_delete and deleted.recovery_id:
                    await self._purge(session, name, subject)
                    return RetractResult(removed=True, message=f"{subject} deleted and purged")
                return RetractResult(removed=True, message=f"{subject} deleted")
            if found.deleted is not None:
                tags = _tags(found.deleted)
                if config.purge_on_delete and ownership(tags, binding) is Ownership.OURS:
                    await self._purge(session, name, subject)
                    return RetractResult(removed=True, message=f"{subject} purged")
                return RetractResult(removed=True, message=f"{subject} was already deleted")
        return RetractResult(removed=True, message=f"{subject} was already gone")

    async def aclose(self) -> None:
        await self._pool.aclose()

    # -- reading ----------------------------------------------------------------------

    def _config(self, target: Target) -> AkvConfig:
        config = target.config
        if not isinstance(config, AkvConfig):
            raise PermanentError(
                "azure-key-vault needs its config (vaultURL at least) to act on this entry"
            )
        return config

    def _config_from_previous(self, target: Target) -> AkvConfig | None:
        """Where an entry removed from the spec had its certificate: from its externalID.

        Its credentials went with its config: the ones this process last used for
        that vault in the binding's namespace, else DefaultAzureCredential.
        """
        external_id = target.previous.external_id
        match = _EXTERNAL_ID.fullmatch(external_id or "")
        if match is None or not is_valid_certificate_name(match["name"]):
            return None
        config = AkvConfig.model_validate(
            {"vaultURL": match["vault"], "certificateName": match["name"]}
        )
        known = self._pool.known_credentials(config.vault_url, target.binding.namespace)
        return config if known is None else config.model_copy(update={"credentials": known})

    async def _call(
        self,
        session: Session,
        action: str,
        subject: str,
        awaitable: Awaitable[T],
        *,
        timeout: float | None = None,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> T:
        """Await one Key Vault call, bounded in time, translating its errors.

        ``ResourceNotFoundError`` and the ``passthrough`` types reach the caller as
        they are; everything else becomes a :class:`DestinationError`.
        """
        try:
            async with asyncio.timeout(timeout or self._settings.request_timeout):
                return await awaitable
        except ResourceNotFoundError:
            raise
        except passthrough:
            raise
        except (AzureError, TimeoutError) as exc:
            if isinstance(exc, ClientAuthenticationError):
                session.mark_stale()
            error = translate(exc, action=action, subject=subject, identity=session.identity)
            raise error from exc

    async def _locate(self, session: Session, name: str, subject: str) -> _Found:
        client = session.client
        try:
            certificate = await self._call(session, "read", subject, client.get_certificate(name))
        except ResourceNotFoundError:
            pass
        else:
            return _Found(certificate=certificate)
        try:
            deleted = await self._call(
                session,
                "read the deleted",
                subject,
                client.get_deleted_certificate(name),
            )
        except ResourceNotFoundError:
            return _Found()
        return _Found(deleted=deleted)

    @staticmethod
    def _require_ours(
        tags: Mapping[str, str], binding: BindingRef, subject: str, *, soft_deleted: bool = False
    ) -> None:
        if ownership(tags, binding) is Ownership.OURS:
            return
        state = "a soft-deleted " if soft_deleted else ""
        raise ConflictError(
            f"{state}{subject} exists and is {describe_owner(tags)}; CertAuto will not "
            "touch it: delete it, or choose another certificateName"
        )

    def _observation(self, certificate: KeyVaultCertificate, config: AkvConfig) -> Observation:
        fingerprint = _fingerprint(certificate)
        tags = _tags(certificate)
        content_hash = (
            tags.get(CONTENT_HASH_TAG) if tags.get(FINGERPRINT_TAG) == fingerprint else None
        )
        drift = self._drift(certificate, config, fingerprint, tags)
        if drift is not None:
            return Observation(
                fingerprint=None,
                external_id=certificate.id,
                not_after=_expires(certificate),
                drift=drift,
            )
        return Observation(
            fingerprint=fingerprint,
            external_id=certificate.id,
            not_after=_expires(certificate),
            content_hash=content_hash,
        )

    @staticmethod
    def _drift(
        certificate: KeyVaultCertificate,
        config: AkvConfig,
        fingerprint: str | None,
        tags: Mapping[str, str],
    ) -> str | None:
        """Why the current version is not in the shape the config asks for, or None."""
        version = _version(certificate)
        if fingerprint is None:
            return f"version {version} holds no certificate"
        stored = _content_type(certificate)
        if stored is not None and stored != config.content_type.mime:
            return f"version {version} is stored as {stored}, config asks for {config.content_type}"
        if tags.get(FINGERPRINT_TAG) != fingerprint or CONTENT_HASH_TAG not in tags:
            return f"version {version} lacks CertAuto's fingerprint tags"
        if _user_tags(tags) != config.tags:
            return f"the tags of version {version} differ from the config's"
        return None

    @staticmethod
    def _holds(
        certificate: KeyVaultCertificate, material: CertificateMaterial, config: AkvConfig
    ) -> bool:
        """Whether the current version already is this material, so nothing is imported."""
        fingerprint = _fingerprint(certificate)
        if fingerprint != material.fingerprint:
            return False
        stored = _content_type(certificate)
        if stored is not None and stored != config.content_type.mime:
            return False
        tags = _tags(certificate)
        if tags.get(FINGERPRINT_TAG) == fingerprint and CONTENT_HASH_TAG in tags:
            return tags[CONTENT_HASH_TAG] == material.content_hash
        return True  # same leaf, content unknown: retag rather than add a version

    # -- writing ----------------------------------------------------------------------

    async def _retag(
        self,
        session: Session,
        current: KeyVaultCertificate,
        name: str,
        subject: str,
        tags: dict[str, str],
    ) -> tuple[str, int]:
        """The current version already holds the material: fix its tags if needed.

        Returns the message and how many writes it made.
        """
        message = f"version {_version(current)} already holds this certificate"
        if _tags(current) == tags:
            return message, 0
        await self._call(
            session,
            "update the tags of",
            subject,
            session.client.update_certificate_properties(
                name, current.properties.version if current.properties else None, tags=tags
            ),
        )
        return f"{message}; tags updated", 1

    async def _resolve_soft_deleted(
        self, session: Session, config: AkvConfig, name: str, deleted: DeletedCertificate
    ) -> KeyVaultCertificate | None:
        """Recover or purge our soft-deleted certificate (None once purged), or refuse."""
        subject = _subject(name, config.vault_url)
        policy = config.on_soft_deleted
        if policy is OnSoftDeleted.FAIL:
            when = f" on {deleted.deleted_on:%Y-%m-%d}" if deleted.deleted_on else ""
            purge = (
                f", purge scheduled {deleted.scheduled_purge_date:%Y-%m-%d}"
                if deleted.scheduled_purge_date
                else ""
            )
            raise PermanentError(
                f"{subject} is soft-deleted (deleted{when}{purge}) and onSoftDeleted is Fail: "
                "recover or purge it in Key Vault, or set onSoftDeleted to Recover or Purge"
            )
        if policy is OnSoftDeleted.RECOVER:
            self._log.info("recovering soft-deleted %s", subject)
            return await self._call(
                session,
                "recover",
                subject,
                session.client.recover_deleted_certificate(
                    name, _polling_interval=self._settings.polling_interval
                ),
                timeout=self._settings.operation_timeout,
            )
        self._log.info("purging soft-deleted %s", subject)
        await self._purge(session, name, subject)
        return None

    async def _import(
        self,
        session: Session,
        config: AkvConfig,
        name: str,
        subject: str,
        material: CertificateMaterial,
        tags: dict[str, str],
        *,
        after_purge: bool,
    ) -> KeyVaultCertificate:
        policy = _policy(material, config.content_type)
        password: str | None = None
        if config.content_type is ContentType.PKCS12:
            password = secrets.token_urlsafe(32)
            payload = await asyncio.to_thread(_pkcs12, material, password.encode())
        else:
            payload = _pem(material)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.operation_timeout
        while True:
            try:
                return await self._call(
                    session,
                    "import",
                    subject,
                    session.client.import_certificate(
                        name, payload, enabled=True, tags=tags, password=password, policy=policy
                    ),
                    passthrough=(ResourceExistsError,),
                )
            except ResourceExistsError as exc:
                # A purge is a long-running operation without a status to poll: the
                # name stays taken ("being deleted") until it is done.
                still_purging = inner_error_code(exc) == "ObjectIsBeingDeleted"
                if after_purge and still_purging and loop.time() < deadline:
                    await asyncio.sleep(self._settings.polling_interval)
                    continue
                error = translate(exc, action="import", subject=subject, identity=session.identity)
                raise error from exc
            except ResourceNotFoundError as exc:  # a 404 on import: the vault itself is gone
                raise PermanentError(f"Key Vault answered 404 to an import of {subject}") from exc

    async def _delete(self, session: Session, name: str, subject: str) -> DeletedCertificate:
        try:
            return await self._call(
                session,
                "delete",
                subject,
                session.client.delete_certificate(
                    name, _polling_interval=self._settings.polling_interval
                ),
                timeout=self._settings.operation_timeout,
            )
        except ResourceNotFoundError:  # deleted meanwhile: the same outcome
            return DeletedCertificate()

    async def _purge(self, session: Session, name: str, subject: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):  # already purged
            await self._call(
                session, "purge", subject, session.client.purge_deleted_certificate(name)
            )
