"""Where an entry's AWS credentials come from, and how messages name that place.

Three sources, resolved on every operation (a rotated Secret takes effect on
the next reconcile):

* the default AWS credential chain of the operator's process: environment
  variables, IRSA (web identity token), EKS Pod Identity (container
  credentials), instance profile;
* an access key pair in a Secret in the binding's namespace, read through the
  operator's Kubernetes client (never cached, never logged);
* either of those, used to assume a role.

Nothing here ever puts a credential value in a message, a log line or a repr.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field

from certauto_acm.config import AssumeRole, Credentials, SecretRef
from certauto_core.kube.client import KubeClient
from certauto_core.kube.errors import ApiError, ForbiddenError, NotFoundError
from certauto_core.kube.resources import SECRETS
from certauto_core.plugins.errors import PermanentError, RetryableError

DEFAULT_CHAIN: str = (
    "the default AWS credential chain (environment, IRSA web identity, EKS Pod Identity, "
    "instance profile)"
)


@dataclass(frozen=True)
class StaticKeys:
    """An access key pair (and session token) read from a Secret. Never printed."""

    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class CredentialSource:
    """Resolved credentials for one operation, and how to name them in messages."""

    description: str
    """"the default AWS credential chain", "Secret apps/aws (keys ...)", "role arn:... via ..."."""
    keys: StaticKeys | None = None
    """``None``: the default chain."""
    role: AssumeRole | None = None

    def cache_key(self) -> str:
        """A digest identifying these credentials, for the client cache (never shown)."""
        digest = hashlib.sha256()
        parts: list[str | None] = [self.description]
        if self.keys is not None:
            parts += [self.keys.access_key_id, self.keys.secret_access_key, self.keys.session_token]
        if self.role is not None:
            parts += [self.role.role_arn, self.role.external_id, self.role.session_name]
        for part in parts:
            encoded = b"\x00" if part is None else b"\x01" + part.encode()
            digest.update(len(encoded).to_bytes(4, "big") + encoded)
        return digest.hexdigest()


def describe_secret(namespace: str, ref: SecretRef) -> str:
    keys = [ref.access_key_id_key, ref.secret_access_key_key]
    if ref.session_token_key:
        keys.append(ref.session_token_key)
    return f"Secret {namespace}/{ref.name} (keys {', '.join(keys)})"


async def resolve(kube: KubeClient, namespace: str, credentials: Credentials) -> CredentialSource:
    """Read what ``credentials`` points at; raise a typed error naming the source."""
    keys: StaticKeys | None = None
    description = DEFAULT_CHAIN
    if credentials.secret_ref is not None:
        description = describe_secret(namespace, credentials.secret_ref)
        keys = await _read_secret(kube, namespace, credentials.secret_ref, description)
    role = credentials.assume_role
    if role is not None:
        description = f"role {role.role_arn} assumed with {description}"
    return CredentialSource(description=description, keys=keys, role=role)


async def _read_secret(
    kube: KubeClient, namespace: str, ref: SecretRef, description: str
) -> StaticKeys:
    try:
        secret = await kube.get(SECRETS.path(namespace, ref.name))
    except NotFoundError as error:
        raise PermanentError(
            f"credentials {description}: the Secret does not exist; create it or remove "
            "credentials.secretRef to use the operator's own identity"
        ) from error
    except ForbiddenError as error:
        raise PermanentError(
            f"credentials {description}: the operator is not allowed to read it (RBAC)"
        ) from error
    except ApiError as error:
        if error.retryable:
            raise RetryableError(
                f"credentials {description}: could not read it ({error.status} {error.reason})"
            ) from error
        raise PermanentError(
            f"credentials {description}: could not read it ({error.status} {error.reason})"
        ) from error
    data = secret.get("data") or {}

    def value(key: str) -> str:
        encoded = data.get(key)
        if encoded is None:
            raise PermanentError(f"credentials {description}: the Secret has no key {key}")
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8").strip()
        except (binascii.Error, UnicodeDecodeError, ValueError) as error:
            raise PermanentError(
                f"credentials {description}: key {key} is not valid base64-encoded text"
            ) from error
        if not decoded:
            raise PermanentError(f"credentials {description}: key {key} is empty")
        return decoded

    access_key_id = value(ref.access_key_id_key)
    secret_access_key = value(ref.secret_access_key_key)
    token = value(ref.session_token_key) if ref.session_token_key else None
    return StaticKeys(access_key_id, secret_access_key, token)
