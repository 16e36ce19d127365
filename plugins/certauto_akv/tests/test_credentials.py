"""Credentials: a client id and secret from a Secret in the binding's namespace, or
DefaultAzureCredential. The Secret lives in the real test API server."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import pytest
from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import ClientSecretCredential, DefaultAzureCredential
from certauto_akv import AkvConfig, AkvDestination, AkvSettings, CredentialRequest
from certauto_akv.config import CredentialsConfig
from certauto_akv.credentials import default_credential_factory

from certauto_core.kube.client import KubeClient
from certauto_core.kube.resources import SECRETS
from certauto_core.plugins.contract import BindingRef, PluginContext, Target
from certauto_core.plugins.errors import PermanentError
from certauto_core.testing.certs import CertFactory
from certauto_core.testing.keyvault import KeyVaultHandle, StaticTokenCredential

CLIENT_ID = "0a1b2c3d-0000-4000-8000-00000000c11e"
TENANT_ID = "72f988bf-0000-4000-8000-0000000072f9"
CLIENT_SECRET = "s3cr3t~value.that-must-never-leak"
CERTS = CertFactory()
ISSUER = CERTS.intermediate_ca(CERTS.root_ca())


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


async def put_secret(kube: KubeClient, namespace: str, name: str, data: Mapping[str, str]) -> None:
    body = {
        "metadata": {"name": name},
        "type": "Opaque",
        "data": {key: _b64(value) for key, value in data.items()},
    }
    try:
        await kube.create(SECRETS.path(namespace), body)
    except Exception:
        await kube.replace(SECRETS.path(namespace, name), {**body, "metadata": {"name": name}})


def secret_config(keyvault: KeyVaultHandle, **credentials: Any) -> AkvConfig:
    return AkvConfig.model_validate(
        {
            "vaultURL": keyvault.vault_url,
            "certificateName": "web",
            "credentials": {"type": "ClientSecret", "secretRef": {"name": "kv-sp"}, **credentials},
        }
    )


def target_in(namespace: str, config: AkvConfig) -> Target:
    return Target(
        binding=BindingRef(namespace=namespace, name="web", uid="u", destination="kv"),
        config=config,
    )


async def test_client_secret_is_read_from_the_bindings_namespace(
    destination: AkvDestination,
    plugin_context: PluginContext,
    keyvault: KeyVaultHandle,
    namespace: str,
    credential_requests: list[CredentialRequest],
) -> None:
    await put_secret(
        plugin_context.kube,
        namespace,
        "kv-sp",
        {"clientID": CLIENT_ID, "clientSecret": CLIENT_SECRET + "\n", "tenantID": TENANT_ID},
    )
    tgt = target_in(namespace, secret_config(keyvault))
    material = CERTS.leaf(ISSUER, ["web.example.test"]).material()

    result = await destination.publish(material, tgt)

    assert result.writes == 1
    [request] = credential_requests
    assert (request.client_id, request.tenant_id, request.client_secret) == (
        CLIENT_ID,
        TENANT_ID,
        CLIENT_SECRET,
    )
    assert CLIENT_SECRET not in repr(request)
    assert (
        request.identity
        == f"client {CLIENT_ID} in tenant {TENANT_ID} from Secret {namespace}/kv-sp"
    )

    keyvault.server.fail_next(1, status=403, retry_after_seconds=None, method="GET")
    with pytest.raises(PermanentError) as denied:
        await destination.observe(tgt)
    assert request.identity in denied.value.message
    assert CLIENT_SECRET not in denied.value.message


async def test_config_tenant_and_custom_keys(
    destination: AkvDestination,
    plugin_context: PluginContext,
    keyvault: KeyVaultHandle,
    namespace: str,
    credential_requests: list[CredentialRequest],
) -> None:
    await put_secret(plugin_context.kube, namespace, "kv-sp", {"id": CLIENT_ID, "pw": "x"})
    config = AkvConfig.model_validate(
        {
            "vaultURL": keyvault.vault_url,
            "credentials": {
                "type": "ClientSecret",
                "secretRef": {"name": "kv-sp", "clientIDKey": "id", "clientSecretKey": "pw"},
                "tenantID": "contoso.onmicrosoft.com",
                "authorityHost": "login.microsoftonline.us",
            },
        }
    )

    await destination.observe(target_in(namespace, config))

    [request] = credential_requests
    assert request.tenant_id == "contoso.onmicrosoft.com"
    assert request.client_id == CLIENT_ID
    assert request.settings.authority_host == "https://login.microsoftonline.us"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (None, "does not exist"),
        ({"clientSecret": "x", "tenantID": TENANT_ID}, "no key 'clientID'"),
        ({"clientID": CLIENT_ID, "clientSecret": "x"}, "no tenant"),
        ({"clientID": CLIENT_ID, "clientSecret": "  ", "tenantID": TENANT_ID}, "is empty"),
    ],
)
async def test_unusable_credentials_secret_is_permanent(
    destination: AkvDestination,
    plugin_context: PluginContext,
    keyvault: KeyVaultHandle,
    namespace: str,
    data: Mapping[str, str] | None,
    expected: str,
) -> None:
    if data is not None:
        await put_secret(plugin_context.kube, namespace, "kv-sp", data)

    with pytest.raises(PermanentError) as refused:
        await destination.observe(target_in(namespace, secret_config(keyvault)))

    assert expected in refused.value.message
    assert f"{namespace}/kv-sp" in refused.value.message
    assert keyvault.server.count() == 0


async def test_a_rotated_secret_replaces_the_session_and_closes_the_old_one(
    plugin_context: PluginContext,
    keyvault: KeyVaultHandle,
    namespace: str,
) -> None:
    made: list[tuple[CredentialRequest, StaticTokenCredential]] = []

    def factory(request: CredentialRequest) -> AsyncTokenCredential:
        credential = StaticTokenCredential()
        made.append((request, credential))
        return credential

    settings = AkvSettings(
        credential_factory=factory, client_options=keyvault.client_kwargs(), secret_ttl=0.0
    )
    destination = AkvDestination(plugin_context, settings)
    kube = plugin_context.kube
    tgt = target_in(namespace, secret_config(keyvault))
    try:
        data = {"clientID": CLIENT_ID, "clientSecret": "first", "tenantID": TENANT_ID}
        await put_secret(kube, namespace, "kv-sp", data)
        await destination.observe(tgt)
        await destination.observe(tgt)  # re-read, unchanged: the same session
        assert len(made) == 1

        await put_secret(kube, namespace, "kv-sp", {**data, "clientSecret": "second"})
        await destination.observe(tgt)

        assert [request.client_secret for request, _ in made] == ["first", "second"]
        assert made[0][1].closed
        assert not made[1][1].closed
    finally:
        await destination.aclose()
    assert made[1][1].closed


async def test_default_credential_factory_builds_azure_identity_credentials() -> None:
    default = CredentialsConfig.model_validate(
        {"clientID": CLIENT_ID, "tenantID": TENANT_ID, "authorityHost": "login.microsoftonline.us"}
    )
    credential = default_credential_factory(CredentialRequest(settings=default, namespace="apps"))
    assert isinstance(credential, DefaultAzureCredential)
    await credential.close()

    secret = CredentialsConfig.model_validate({"type": "ClientSecret", "secretRef": {"name": "s"}})
    request = CredentialRequest(
        settings=secret,
        namespace="apps",
        client_id=CLIENT_ID,
        tenant_id=TENANT_ID,
        client_secret=CLIENT_SECRET,
    )
    credential = default_credential_factory(request)
    assert isinstance(credential, ClientSecretCredential)
    await credential.close()
    assert CLIENT_SECRET not in request.identity


def test_default_identity_names_the_workload_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_CLIENT_ID", raising=False)
    settings = CredentialsConfig()
    assert "no AZURE_CLIENT_ID" in CredentialRequest(settings=settings, namespace="a").identity
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)
    assert CLIENT_ID in CredentialRequest(settings=settings, namespace="a").identity
    pinned = CredentialsConfig.model_validate({"clientID": "abc"})
    assert "client abc" in CredentialRequest(settings=pinned, namespace="a").identity
