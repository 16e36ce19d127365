"""The config model and the mapping of AWS errors: pure, no network."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from certauto_acm import plugin as acm_plugin
from certauto_acm.config import AcmConfig
from certauto_acm.errors import service_message, translate_client_error
from pydantic import ValidationError

from certauto_core.plugins.errors import ConfigError, PermanentError, RetryableError
from certauto_core.plugins.manager import PluginManager

ARN = "arn:aws:acm:us-east-1:123456789012:certificate/0b7c6d5e-1111-2222-3333-444455556666"
EU_ARN = ARN.replace("us-east-1", "eu-west-1")


def validate(raw: dict[str, Any]) -> AcmConfig:
    return AcmConfig.model_validate(raw)


def test_a_minimal_config_uses_the_operators_identity() -> None:
    config = validate({"region": "eu-central-1"})
    assert config.certificate_arn is None
    assert config.tags == {}
    assert config.credentials.secret_ref is None
    assert config.credentials.assume_role is None
    assert config.endpoint_url is None


def test_a_full_config() -> None:
    config = validate(
        {
            "region": "us-east-1",
            "certificateArn": ARN,
            "tags": {"team": "platform", "cost center": "web/42"},
            "credentials": {
                "secretRef": {"name": "aws-keys", "accessKeyIDKey": "id"},
                "assumeRole": {
                    "roleARN": "arn:aws:iam::210987654321:role/certauto",
                    "externalID": "tenant-7",
                    "sessionName": "certauto-apps",
                },
            },
            "endpointURL": "https://vpce-0123.acm.us-east-1.vpce.amazonaws.com",
            "stsEndpointURL": "https://sts.us-east-1.amazonaws.com",
        }
    )
    assert config.certificate_arn == ARN
    assert config.credentials.secret_ref is not None
    assert config.credentials.secret_ref.access_key_id_key == "id"
    assert config.credentials.secret_ref.secret_access_key_key == "secretAccessKey"
    assert config.credentials.assume_role is not None
    assert config.credentials.assume_role.session_name == "certauto-apps"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({}, "region"),
        ({"region": "US-EAST-1"}, "region"),
        ({"region": "us-east-1", "regoin": "x"}, "regoin"),
        ({"region": "us-east-1", "certificateArn": "arn:aws:iam::1:role/x"}, "certificateArn"),
        (
            {"region": "us-east-1", "certificateArn": ARN.replace("us-east-1", "eu-west-1")},
            "region",
        ),
        ({"region": "us-east-1", "tags": {"aws:createdBy": "me"}}, "aws:"),
        ({"region": "us-east-1", "tags": {"certauto.sanorg.in/x": "y"}}, "set by CertAuto"),
        ({"region": "us-east-1", "tags": {"k" * 129: "v"}}, "1-128"),
        ({"region": "us-east-1", "tags": {"team": "a&b"}}, "letters, digits"),
        ({"region": "us-east-1", "tags": {f"t{i}": "v" for i in range(46)}}, "at most 45 tags"),
        ({"region": "us-east-1", "credentials": {"secretRef": {"name": "Bad_Name"}}}, "name"),
        ({"region": "us-east-1", "credentials": {"assumeRole": {"roleARN": "x"}}}, "roleARN"),
        ({"region": "us-east-1", "credentials": {"accessKeyID": "AKIA"}}, "accessKeyID"),
        ({"region": "us-east-1", "endpointURL": "localhost:4566"}, "endpointURL"),
    ],
)
def test_bad_configs_are_refused_naming_the_field(raw: dict[str, Any], field: str) -> None:
    manager = PluginManager()
    manager.register(acm_plugin, name="acm")
    with pytest.raises(ConfigError) as refused:
        manager.validate_config("aws-acm", raw)
    assert field in refused.value.message


def test_validation_messages_never_repeat_a_tag_value() -> None:
    with pytest.raises(ValidationError) as refused:
        validate({"region": "us-east-1", "tags": {"team": "s3cr3t&value"}})
    assert "s3cr3t" not in str(refused.value.errors(include_input=False))


def test_the_hook_registers_one_versioned_type() -> None:
    (registered,) = acm_plugin.certauto_destination_types()
    assert registered.name == "aws-acm"
    assert registered.api_version == 1
    assert registered.config_model is AcmConfig


# -- AWS errors ----------------------------------------------------------------------------


def client_error(code: str, message: str = "", status: int = 400) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "ImportCertificate",
    )


def translate(error: ClientError) -> Exception:
    return translate_client_error(
        error, operation="ImportCertificate", region="us-east-1", credential_source="Secret a/b"
    )


@pytest.mark.parametrize(
    "code", ["ThrottlingException", "TooManyRequestsException", "RequestInProgressException"]
)
def test_throttling_is_retryable(code: str) -> None:
    translated = translate(client_error(code, "Rate exceeded"))
    assert isinstance(translated, RetryableError)
    if code != "RequestInProgressException":
        assert translated.retry_after == timedelta(seconds=1)


def test_any_5xx_is_retryable() -> None:
    assert isinstance(translate(client_error("Weird", status=503)), RetryableError)


def test_unknown_client_errors_are_permanent_and_keep_the_service_message() -> None:
    translated = translate(client_error("ValidationException", "The certificate field is bad."))
    assert isinstance(translated, PermanentError)
    assert translated.message == (
        "ACM ImportCertificate in us-east-1 failed with ValidationException: "
        "The certificate field is bad."
    )


def test_service_messages_never_carry_key_material() -> None:
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    blob = "QUJD" * 40
    message = service_message(client_error("ValidationException", f"bad {pem} and {blob} here"))
    assert "PRIVATE KEY" not in message
    assert blob not in message
    assert message == "bad <redacted> and <redacted> here"


def test_credential_errors_name_the_source_not_the_service_message() -> None:
    translated = translate(client_error("InvalidClientTokenId", "token AKIA1234 is invalid"))
    assert isinstance(translated, PermanentError)
    assert "Secret a/b" in translated.message
    assert "AKIA1234" not in translated.message
