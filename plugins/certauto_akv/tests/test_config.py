"""The config model, Key Vault's name rules and the default name: pure unit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import certauto_akv.plugin as akv_plugin
import pytest
from certauto_akv import AkvConfig, ContentType, CredentialType, OnSoftDeleted
from certauto_akv.config import default_certificate_name, is_valid_certificate_name
from certauto_akv.errors import parse_retry_after
from certauto_akv.plugin import TYPE_NAME, certauto_destination_types, destination_type
from certauto_akv.tags import Ownership, desired_tags, ownership

from certauto_core.plugins.contract import BindingRef
from certauto_core.plugins.errors import ConfigError
from certauto_core.plugins.manager import PluginManager

VAULT = "https://prod-certs.vault.azure.net"


@pytest.fixture
def manager() -> PluginManager:
    manager = PluginManager()
    manager.register(akv_plugin, name="azure-key-vault")
    return manager


def refused(manager: PluginManager, raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as error:
        manager.validate_config(TYPE_NAME, raw)
    return error.value.message


def test_defaults(manager: PluginManager) -> None:
    config = manager.validate_config(TYPE_NAME, {"vaultURL": VAULT + "/"})
    assert isinstance(config, AkvConfig)
    assert config.vault_url == VAULT
    assert config.certificate_name is None
    assert config.on_soft_deleted is OnSoftDeleted.RECOVER
    assert config.content_type is ContentType.PKCS12
    assert config.credentials.type is CredentialType.DEFAULT
    assert config.purge_on_delete is False
    assert config.tags == {}


def test_invalid_certificate_name_is_a_clear_config_error(manager: PluginManager) -> None:
    for bad in ("web.example.com", "web_example", "", "x" * 128, "wéb"):
        message = refused(manager, {"vaultURL": VAULT, "certificateName": bad})
        assert "config.certificateName" in message
        assert "1 to 127 characters" in message
        assert "letter, a digit or '-'" in message
        if bad:
            assert bad not in message, "the message must not echo the value"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({}, "config.vaultURL: Field required"),
        ({"vaultURL": "http://kv.vault.azure.net"}, "config.vaultURL"),
        ({"vaultURL": VAULT + "/certificates/x"}, "config.vaultURL"),
        ({"vaultURL": "https://user:pw@kv.vault.azure.net"}, "config.vaultURL"),
        ({"vaultURL": VAULT, "onSoftDeleted": "Ignore"}, "config.onSoftDeleted"),
        ({"vaultURL": VAULT, "contentType": "DER"}, "config.contentType"),
        ({"vaultURL": VAULT, "tags": {"certauto-binding": "x"}}, "config.tags"),
        ({"vaultURL": VAULT, "tags": {f"t{i}": "v" for i in range(11)}}, "at most 10 tags"),
        ({"vaultURL": VAULT, "tags": {"t": "v" * 257}}, "config.tags"),
        ({"vaultURL": VAULT, "credentials": {"type": "ClientSecret"}}, "needs secretRef"),
        (
            {"vaultURL": VAULT, "credentials": {"secretRef": {"name": "sp"}}},
            "secretRef needs type ClientSecret",
        ),
        (
            {"vaultURL": VAULT, "credentials": {"type": "ClientSecret", "secretRef": {}}},
            "config.credentials.secretRef.name",
        ),
        (
            {
                "vaultURL": VAULT,
                "credentials": {"type": "ClientSecret", "secretRef": {"name": "Not_A_Name"}},
            },
            "config.credentials.secretRef.name",
        ),
        ({"vaultURL": VAULT, "credentials": {"type": "Password"}}, "config.credentials.type"),
        ({"vaultURL": VAULT, "credentials": {"tenantID": "a b"}}, "config.credentials.tenantID"),
        (
            {"vaultURL": VAULT, "credentials": {"authorityHost": "https://x/y"}},
            "config.credentials.authorityHost",
        ),
        ({"vaultUrl": VAULT}, "config.vaultUrl"),
        ({"vaultURL": VAULT, "clientSecret": "hunter2"}, "config.clientSecret"),
    ],
)
def test_bad_configs_name_the_field_without_values(
    manager: PluginManager, raw: dict[str, Any], field: str
) -> None:
    message = refused(manager, raw)
    assert field in message
    assert "hunter2" not in message


def test_key_vault_name_rule() -> None:
    assert is_valid_certificate_name("a")
    assert is_valid_certificate_name("Web-Example-123")
    assert is_valid_certificate_name("x" * 127)
    assert not is_valid_certificate_name("x" * 128)
    assert not is_valid_certificate_name("a.b")
    assert not is_valid_certificate_name("")


@pytest.mark.parametrize(
    ("binding", "expected"),
    [
        (BindingRef("apps", "web", "u", "kv-prod"), "apps-web-kv-prod"),
        (BindingRef("apps", "web.example.com", "u", "kv"), None),
        (BindingRef("a" * 63, "b" * 200, "u", "kv"), None),
    ],
)
def test_default_name_is_valid_deterministic_and_readable(
    binding: BindingRef, expected: str | None
) -> None:
    name = default_certificate_name(binding)
    assert is_valid_certificate_name(name)
    assert name == default_certificate_name(binding)
    if expected is not None:
        assert name == expected
    else:
        assert name.startswith(binding.namespace[:20])


def test_default_names_of_bindings_that_only_differ_by_a_dot_differ() -> None:
    dotted = BindingRef("apps", "web.example", "u", "kv")
    dashed = BindingRef("apps", "web-example", "u", "kv")
    assert default_certificate_name(dotted) != default_certificate_name(dashed)


def test_ownership_needs_all_three_tags() -> None:
    binding = BindingRef("apps", "web", "u", "kv")
    tags = desired_tags(binding, "f" * 64, "c" * 64, {"team": "x"})
    assert ownership(tags, binding) is Ownership.OURS
    assert ownership({**tags, "certauto-destination": "other"}, binding) is Ownership.OTHER_ENTRY
    assert ownership({**tags, "certauto-managed-by": "someone"}, binding) is Ownership.FOREIGN
    assert ownership(None, binding) is Ownership.FOREIGN
    long_binding = BindingRef("n" * 63, "m" * 253, "u", "kv")
    long_tags = desired_tags(long_binding, "f" * 64, "c" * 64, {})
    assert all(len(value) <= 256 for value in long_tags.values())
    assert ownership(long_tags, long_binding) is Ownership.OURS


def test_parse_retry_after() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_retry_after({"Retry-After": "7"}) == timedelta(seconds=7)
    assert parse_retry_after({"retry-after": "1.5"}) == timedelta(seconds=1.5)
    assert parse_retry_after({"x-ms-retry-after-ms": "250"}) == timedelta(milliseconds=250)
    assert parse_retry_after(
        {"Retry-After": "Wed, 01 Jan 2025 00:00:30 GMT"}, now=now
    ) == timedelta(seconds=30)
    assert parse_retry_after({"Retry-After": "Tue, 31 Dec 2024 00:00:00 GMT"}, now=now) == (
        timedelta(0)
    )
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({"Retry-After": "-3"}) is None
    assert parse_retry_after({}) is None


def test_the_hook_returns_the_type() -> None:
    [registered] = certauto_destination_types()
    assert registered.name == TYPE_NAME
    assert registered.config_model is AkvConfig
    assert registered.api_version == 1
    assert destination_type().config_model is AkvConfig
