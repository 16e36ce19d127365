"""Failures: throttling and outages are retryable, quotas and credentials are permanent.

The plugin never retries on its own (botocore's retries are off): each injected
fault must reach the caller as a typed error, and the next call must succeed.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import timedelta

import pytest
from acm_support import acm_config, arns_in, material, sync, target
from certauto_acm.destination import AcmDestination

from certauto_core.kube.client import KubeClient
from certauto_core.kube.resources import SECRETS
from certauto_core.plugins.contract import BindingRef
from certauto_core.plugins.errors import PermanentError, RetryableError
from certauto_core.testing.aws import AcmHandle
from certauto_core.testing.certs import CertFactory, IssuedCert

ACCESS_KEY_ID = "AKIACERTAUTOTEST0001"
SECRET_ACCESS_KEY = "c2VjcmV0LWtleS10aGF0LW11c3QtbmV2ZXItbGVhaw"


def credential_of(acm: AcmHandle, operation: str) -> str:
    """The access key id that signed the last request for ``operation``."""
    record = [r for r in acm.proxy.records if r.operation == operation][-1]
    match = re.search(r"Credential=([^/]+)/", record.headers["Authorization"])
    assert match is not None
    return match.group(1)


async def create_secret(
    kube: KubeClient, namespace: str, name: str, data: Mapping[str, str]
) -> None:
    await kube.create(
        SECRETS.path(namespace),
        {
            "metadata": {"name": name},
            "type": "Opaque",
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
        },
    )


# -- throttling and outages -----------------------------------------------------------------


async def test_throttling_for_the_first_calls_is_retryable_then_succeeds(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    where = target(binding, acm_config(acm))
    chosen = material(certs, issuer)
    acm.proxy.fail_next("ImportCertificate", count=2)

    failures: list[RetryableError] = []
    while True:  # the core's loop, without its backoff
        try:
            _, result = await sync(destination, chosen, where)
        except RetryableError as error:
            failures.append(error)
            continue
        break

    assert len(failures) == 2
    assert all("ThrottlingException" in failure.message for failure in failures)
    assert all(failure.retry_after == timedelta(seconds=1) for failure in failures)
    assert result is not None
    assert acm.proxy.count("ImportCertificate") == 3
    assert acm.proxy.count("ImportCertificate", include_injected=False) == 1
    assert await arns_in(acm) == [result.external_id]


async def test_throttled_reads_are_retryable(
    aws_env: AcmHandle, destination: AcmDestination, binding: BindingRef
) -> None:
    acm = aws_env
    acm.proxy.fail_next("ListCertificates")

    with pytest.raises(RetryableError) as throttled:
        await destination.observe(target(binding, acm_config(acm)))

    assert "ListCertificates" in throttled.value.message
    assert (await destination.observe(target(binding, acm_config(acm)))).fingerprint is None


@pytest.mark.parametrize(
    ("code", "status"),
    [("InternalFailure", 500), ("ServiceUnavailableException", 503), ("Whatever", 502)],
)
async def test_server_errors_are_retryable(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
    code: str,
    status: int,
) -> None:
    acm = aws_env
    acm.proxy.fail_next("ImportCertificate", error_code=code, status=status, message="oops")

    with pytest.raises(RetryableError) as failed:
        await sync(destination, material(certs, issuer), target(binding, acm_config(acm)))

    assert code in failed.value.message
    assert f"HTTP {status}" in failed.value.message


async def test_an_unreachable_endpoint_is_retryable(
    aws_env: AcmHandle, destination: AcmDestination, binding: BindingRef
) -> None:
    config = acm_config(aws_env).model_copy(update={"endpoint_url": "http://127.0.0.1:9"})
    with pytest.raises(RetryableError) as failed:
        await destination.observe(target(binding, config))
    assert "could not reach the endpoint" in failed.value.message


async def test_limit_exceeded_is_permanent_and_names_the_quota(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    acm.proxy.fail_next(
        "ImportCertificate",
        error_code="LimitExceededException",
        message="Error importing certificate. Limit exceeded.",
    )

    with pytest.raises(PermanentError) as failed:
        await sync(destination, material(certs, issuer), target(binding, acm_config(acm)))

    message = failed.value.message
    assert "LimitExceededException" in message
    assert "'Number of imported certificates per year (last 365 days)'" in message
    assert "Limit exceeded" in message
    assert await arns_in(acm) == []


# -- credentials ------------------------------------------------------------------------


async def test_no_credentials_in_the_default_chain_is_permanent_and_named(
    acm: AcmHandle, destination: AcmDestination, binding: BindingRef
) -> None:
    with pytest.raises(PermanentError) as failed:
        await destination.observe(target(binding, acm_config(acm)))

    assert "the default AWS credential chain" in failed.value.message
    assert "NoCredentialsError" in failed.value.message
    assert acm.proxy.count() == 0


async def test_credentials_that_appear_later_are_picked_up(
    acm: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client made while no credentials existed is not kept (say, IRSA came up late)."""
    with pytest.raises(PermanentError):
        await destination.observe(target(binding, acm_config(acm)))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)

    assert (await destination.observe(target(binding, acm_config(acm)))).fingerprint is None
    assert credential_of(acm, "ListCertificates") == ACCESS_KEY_ID


async def test_access_keys_from_a_secret_in_the_bindings_namespace(
    acm: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    kube: KubeClient,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    await create_secret(
        kube,
        binding.namespace,
        "aws",
        {"accessKeyID": ACCESS_KEY_ID, "secretAccessKey": SECRET_ACCESS_KEY + "\n"},
    )
    config = acm_config(acm, credentials={"secretRef": {"name": "aws"}})

    _, result = await sync(destination, material(certs, issuer), target(binding, config))

    assert result is not None
    assert credential_of(acm, "ImportCertificate") == ACCESS_KEY_ID

    # A rotated Secret takes effect on the next operation, with a new client.
    rotated = "AKIACERTAUTOTEST0002"
    await kube.merge_patch(
        SECRETS.path(binding.namespace, "aws"),
        {"data": {"accessKeyID": base64.b64encode(rotated.encode()).decode()}},
    )
    await destination.observe(target(binding, config))
    assert credential_of(acm, "ListTagsForCertificate") == rotated


async def test_custom_secret_keys_and_a_session_token(
    acm: AcmHandle, destination: AcmDestination, binding: BindingRef, kube: KubeClient
) -> None:
    await create_secret(
        kube,
        binding.namespace,
        "aws-session",
        {"id": ACCESS_KEY_ID, "key": SECRET_ACCESS_KEY, "token": "session-token-value"},
    )
    config = acm_config(
        acm,
        credentials={
            "secretRef": {
                "name": "aws-session",
                "accessKeyIDKey": "id",
                "secretAccessKeyKey": "key",
                "sessionTokenKey": "token",
            }
        },
    )

    await destination.observe(target(binding, config))

    record = acm.proxy.records[-1]
    assert record.headers["X-Amz-Security-Token"] == "session-token-value"


async def test_a_missing_secret_is_permanent_and_named(
    acm: AcmHandle, destination: AcmDestination, binding: BindingRef
) -> None:
    config = acm_config(acm, credentials={"secretRef": {"name": "nope"}})

    with pytest.raises(PermanentError) as failed:
        await destination.observe(target(binding, config))

    assert f"Secret {binding.namespace}/nope" in failed.value.message
    assert "does not exist" in failed.value.message
    assert acm.proxy.count() == 0


async def test_a_secret_without_the_key_is_permanent_and_named(
    acm: AcmHandle, destination: AcmDestination, binding: BindingRef, kube: KubeClient
) -> None:
    await create_secret(kube, binding.namespace, "half", {"accessKeyID": ACCESS_KEY_ID})
    config = acm_config(acm, credentials={"secretRef": {"name": "half"}})

    with pytest.raises(PermanentError) as failed:
        await destination.observe(target(binding, config))

    assert "has no key secretAccessKey" in failed.value.message
    assert ACCESS_KEY_ID not in failed.value.message


@pytest.mark.parametrize(
    "code", ["UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException"]
)
async def test_refused_credentials_are_permanent_and_name_their_source(
    acm: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    kube: KubeClient,
    code: str,
) -> None:
    await create_secret(
        kube,
        binding.namespace,
        "aws",
        {"accessKeyID": ACCESS_KEY_ID, "secretAccessKey": SECRET_ACCESS_KEY},
    )
    acm.proxy.fail_next(None, error_code=code, message="The security token is invalid.")
    config = acm_config(acm, credentials={"secretRef": {"name": "aws"}})

    with pytest.raises(PermanentError) as failed:
        await destination.observe(target(binding, config))

    message = failed.value.message
    assert f"Secret {binding.namespace}/aws (keys accessKeyID, secretAccessKey)" in message
    assert code in message
    assert SECRET_ACCESS_KEY not in message
    assert ACCESS_KEY_ID not in message


async def test_access_denied_names_the_missing_permission(
    aws_env: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    acm = aws_env
    acm.proxy.fail_next(
        "ImportCertificate", error_code="AccessDeniedException", message="not authorized"
    )

    with pytest.raises(PermanentError) as failed:
        await sync(destination, material(certs, issuer), target(binding, acm_config(acm)))

    assert "needs the IAM permission acm:ImportCertificate" in failed.value.message
    assert "the default AWS credential chain" in failed.value.message


async def test_assume_role_with_keys_from_a_secret(
    acm: AcmHandle,
    destination: AcmDestination,
    binding: BindingRef,
    kube: KubeClient,
    certs: CertFactory,
    issuer: IssuedCert,
) -> None:
    await create_secret(
        kube,
        binding.namespace,
        "aws",
        {"accessKeyID": ACCESS_KEY_ID, "secretAccessKey": SECRET_ACCESS_KEY},
    )
    role = "arn:aws:iam::111111111111:role/certauto-import"
    config = acm_config(
        acm,
        credentials={
            "secretRef": {"name": "aws"},
            "assumeRole": {"roleARN": role, "externalID": "certauto-test"},
        },
        stsEndpointURL=acm.endpoint_url,
    )

    _, result = await sync(destination, material(certs, issuer), target(binding, config))

    assert result is not None
    assert result.external_id is not None
    # moto files what an assumed role imports under the role's account.
    assert result.external_id.startswith(f"arn:aws:acm:{acm.region}:111111111111:")
    (assume,) = [r for r in acm.proxy.records if r.operation == ""]
    assert f"Credential={ACCESS_KEY_ID}/" in assume.headers["Authorization"]
    assert credential_of(acm, "ImportCertificate").startswith("ASIA")


async def test_assume_role_without_base_credentials_names_the_role_and_the_chain(
    acm: AcmHandle, destination: AcmDestination, binding: BindingRef
) -> None:
    config = acm_config(
        acm,
        credentials={"assumeRole": {"roleARN": "arn:aws:iam::111111111111:role/x"}},
        stsEndpointURL=acm.endpoint_url,
    )

    with pytest.raises(PermanentError) as failed:
        await destination.observe(target(binding, config))

    role = "role arn:aws:iam::111111111111:role/x"
    assert f"{role} assumed with the default AWS credential chain" in failed.value.message
    assert acm.proxy.count() == 0
