"""The typed CertificateBinding models: parsing, defaults, durations, errors, status."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from certauto_core.api import conditions, crd, models
from certauto_core.api.conditions import ConditionType
from certauto_core.api.models import (
    CertificateBinding,
    CertificateBindingSpec,
    CertificateBindingStatus,
    Condition,
    ConditionStatus,
    DeletionPolicy,
    DestinationState,
    DestinationStatus,
    PrivateKeyAlgorithm,
    PrivateKeyEncoding,
)

# The example of DESIGN.md §2, with its schematic status written out.
DESIGN_EXAMPLE = """
apiVersion: sanorg.in/v1alpha1
kind: CertificateBinding
metadata: {name: web, namespace: apps, generation: 3}
spec:
  certificate:
    secretName: web-tls
    issuerRef: {name: letsencrypt, kind: ClusterIssuer}
    commonName: web.example.com
    dnsNames: [web.example.com]
    duration: 2160h
    renewBefore: 360h
    privateKey: {algorithm: ECDSA, size: 256, encoding: PKCS8}
  validation:
    minRemainingValidity: 24h
  destinations:
    - name: apps-mirror
      type: reflector
      config:
        namespaces: [team-a, team-b]
        namespaceSelector: {matchLabels: {certauto.sanorg.in/inject: "true"}}
    - name: kv-prod
      type: azure-key-vault
      config: {vaultURL: "https://prod.vault.azure.net", certificateName: web-example-com}
    - name: acm-use1
      type: aws-acm
      config: {region: us-east-1}
  syncPolicy:
    maxRetries: 5
    retryInterval: 30s
    deletionPolicy: Retain
    suspend: false
status:
  observedGeneration: 3
  conditions:
    - {type: Validated, status: "True", observedGeneration: 3, reason: Valid,
       message: "", lastTransitionTime: "2025-01-01T00:00:00Z"}
    - {type: Synced, status: "True", observedGeneration: 3, reason: AllSynced,
       message: 3/3 destinations synced, lastTransitionTime: "2025-01-01T00:01:00Z"}
    - {type: Ready, status: "True", observedGeneration: 3, reason: Ready,
       message: "", lastTransitionTime: "2025-01-01T00:01:00Z"}
  certificate:
    serialNumber: 03a1f2
    notBefore: "2025-01-01T00:00:00Z"
    notAfter: "2025-04-01T00:00:00Z"
    sha256Fingerprint: ab12
    dnsNames: [web.example.com]
    issuer: CN=R11,O=Let's Encrypt,C=US
    keyAlgorithm: ECDSA-P256
  destinations:
    - name: acm-use1
      type: aws-acm
      state: Synced
      syncedFingerprint: ab12
      externalID: "arn:aws:acm:us-east-1:123456789012:certificate/0b1c"
      lastSyncTime: "2025-01-01T00:01:00Z"
      lastAttemptTime: "2025-01-01T00:01:00Z"
      attempts: 0
      message: imported
  source: certificate/web
  syncedDestinations: 3/3
  notAfter: "2025-04-01T00:00:00Z"
"""


def design_example() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DESIGN_EXAMPLE)
    return loaded


def spec_schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd.openapi_schema()["properties"]["spec"]
    return schema


def minimal_spec() -> dict[str, Any]:
    return {"sourceSecretRef": {"name": "existing-tls"}}


def error_locations(excinfo: pytest.ExceptionInfo[ValidationError]) -> list[tuple[Any, ...]]:
    return [tuple(error["loc"]) for error in excinfo.value.errors()]


# --- Parsing the full example ---------------------------------------------------------


def test_design_example_parses() -> None:
    binding = CertificateBinding.model_validate(design_example())
    assert (binding.metadata.namespace, binding.metadata.name) == ("apps", "web")

    cert = binding.spec.certificate
    assert cert is not None
    assert binding.spec.source_secret_ref is None
    assert cert.secret_name == "web-tls"
    assert (cert.issuer_ref.name, cert.issuer_ref.kind) == ("letsencrypt", "ClusterIssuer")
    assert cert.issuer_ref.group == "cert-manager.io"
    assert cert.dns_names == ("web.example.com",)
    assert cert.duration == timedelta(days=90)
    assert cert.renew_before == timedelta(days=15)
    assert cert.private_key is not None
    assert cert.private_key.algorithm is PrivateKeyAlgorithm.ECDSA
    assert cert.private_key.size == 256
    assert cert.private_key.encoding is PrivateKeyEncoding.PKCS8
    assert cert.private_key.rotation_policy is None

    assert binding.spec.validation.min_remaining_validity == timedelta(hours=24)
    assert [(d.name, d.type) for d in binding.spec.destinations] == [
        ("apps-mirror", "reflector"),
        ("kv-prod", "azure-key-vault"),
        ("acm-use1", "aws-acm"),
    ]
    mirror = binding.spec.destination("apps-mirror")
    assert mirror is not None
    assert mirror.config == {
        "namespaces": ["team-a", "team-b"],
        "namespaceSelector": {"matchLabels": {"certauto.sanorg.in/inject": "true"}},
    }
    assert binding.spec.destination("nope") is None
    policy = binding.spec.sync_policy
    assert policy.max_retries == 5
    assert policy.retry_interval == timedelta(seconds=30)
    assert policy.deletion_policy is DeletionPolicy.RETAIN
    assert policy.suspend is False


def test_design_example_status_parses() -> None:
    status = CertificateBinding.model_validate(design_example()).status
    assert status is not None
    assert status.observed_generation == 3
    assert [c.type for c in status.conditions] == ["Validated", "Synced", "Ready"]
    ready = status.condition("Ready")
    assert ready is not None
    assert ready.status is ConditionStatus.TRUE
    assert status.certificate is not None
    assert status.certificate.not_after == datetime(2025, 4, 1, tzinfo=UTC)
    acm = status.destination("acm-use1")
    assert acm is not None
    assert acm.state is DestinationState.SYNCED
    assert acm.external_id == "arn:aws:acm:us-east-1:123456789012:certificate/0b1c"
    assert status.source == "certificate/web"
    assert status.synced_destinations == "3/3"


def test_spec_round_trips_through_the_wire_form() -> None:
    raw = design_example()["spec"]
    spec = CertificateBindingSpec.model_validate(raw)
    wire = spec.to_dict()
    assert wire["certificate"]["duration"] == "2160h"
    assert wire["certificate"]["renewBefore"] == "360h"
    assert wire["syncPolicy"]["retryInterval"] == "30s"
    assert CertificateBindingSpec.model_validate(wire) == spec
    # Nothing the user wrote is lost or renamed (only defaults are added).
    assert crd.apply_defaults(spec_schema(), copy.deepcopy(raw)) == wire


def test_snake_case_names_are_accepted_too() -> None:
    spec = CertificateBindingSpec.model_validate(
        {"source_secret_ref": {"name": "x"}, "sync_policy": {"max_retries": 1}}
    )
    assert spec.sync_policy.max_retries == 1


def test_models_are_frozen() -> None:
    spec = CertificateBindingSpec.model_validate(minimal_spec())
    with pytest.raises(ValidationError, match="frozen"):
        spec.sync_policy = models.SyncPolicy()  # type: ignore[misc]


# --- Defaults ---------------------------------------------------------------------------

# What kube-apiserver v1.37 (k8s.io/apiextensions-apiserver v0.37.2: prune, default,
# validate, CEL) returned for minimal_spec() plus one destination, captured once.
API_SERVER_DEFAULTED_SPEC = {
    "destinations": [{"name": "a", "type": "vendor.example.com/thing"}],
    "sourceSecretRef": {"name": "existing-tls"},
    "syncPolicy": {
        "deletionPolicy": "Retain",
        "maxRetries": 5,
        "retryInterval": "30s",
        "suspend": False,
    },
    "validation": {"minRemainingValidity": "24h"},
}


def test_apply_defaults_matches_the_api_server() -> None:
    raw = {**minimal_spec(), "destinations": [{"name": "a", "type": "vendor.example.com/thing"}]}
    assert crd.apply_defaults(spec_schema(), raw) == API_SERVER_DEFAULTED_SPEC


def test_model_defaults_equal_the_crd_defaults() -> None:
    undefaulted = CertificateBindingSpec.model_validate(minimal_spec())
    defaulted = CertificateBindingSpec.model_validate(
        crd.apply_defaults(spec_schema(), minimal_spec())
    )
    assert undefaulted == defaulted
    assert defaulted.validation.min_remaining_validity == timedelta(hours=24)
    assert defaulted.sync_policy == models.SyncPolicy(
        max_retries=5,
        retry_interval=timedelta(seconds=30),
        deletion_policy=DeletionPolicy.RETAIN,
        suspend=False,
    )
    assert defaulted.destinations == ()


def test_issuer_ref_defaults() -> None:
    spec = CertificateBindingSpec.model_validate(
        {"certificate": {"secretName": "s", "issuerRef": {"name": "ca"}, "dnsNames": ["a.b"]}}
    )
    assert spec.certificate is not None
    assert spec.certificate.issuer_ref.kind == "Issuer"
    assert spec.certificate.issuer_ref.group == "cert-manager.io"


def test_partial_sync_policy_keeps_the_other_defaults() -> None:
    spec = CertificateBindingSpec.model_validate(
        {**minimal_spec(), "syncPolicy": {"deletionPolicy": "Delete"}}
    )
    assert spec.sync_policy.deletion_policy is DeletionPolicy.DELETE
    assert spec.sync_policy.max_retries == 5
    assert spec.sync_policy.retry_interval == timedelta(seconds=30)


# --- Durations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("1h30m", timedelta(minutes=90)),
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("1.5h", timedelta(minutes=90)),
        ("2160h", timedelta(days=90)),
        ("0", timedelta(0)),
        ("10us", timedelta(microseconds=10)),
    ],
)
def test_durations_parse(text: str, expected: timedelta) -> None:
    policy = models.SyncPolicy.model_validate({"retryInterval": text})
    assert policy.retry_interval == expected


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("1d", "unknown unit 'd'"),
        ("-5m", "negative"),
        ("+1h", "no sign"),
        (".5h", "no sign, no leading '.'"),
        ("", "empty"),
        ("30", "missing unit"),
        (30, "expected a Go duration string"),
        ("1" * 65 + "s", "at most 64 characters"),
    ],
)
def test_bad_durations_name_the_field(value: object, says: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        CertificateBindingSpec.model_validate(
            {**minimal_spec(), "syncPolicy": {"retryInterval": value}}
        )
    assert error_locations(excinfo) == [("syncPolicy", "retryInterval")]
    assert says in str(excinfo.value)


def test_duration_accepts_a_timedelta() -> None:
    policy = models.SyncPolicy(retry_interval=timedelta(minutes=2))
    assert policy.to_dict()["retryInterval"] == "2m"


def test_duration_pattern_is_the_crds() -> None:
    pattern = spec_schema()["properties"]["syncPolicy"]["properties"]["retryInterval"]["pattern"]
    assert pattern == models.DURATION_PATTERN


# --- Bad input names the field ------------------------------------------------------


def test_exactly_one_source() -> None:
    both = {
        "sourceSecretRef": {"name": "x"},
        "certificate": {"secretName": "s", "issuerRef": {"name": "i"}, "dnsNames": ["a.b"]},
    }
    for spec in (both, {}):
        with pytest.raises(ValidationError, match=models.EXACTLY_ONE_SOURCE_MESSAGE):
            CertificateBindingSpec.model_validate(spec)


def test_a_binding_without_a_source_names_spec() -> None:
    raw = design_example()
    raw["spec"] = {"destinations": []}
    with pytest.raises(ValidationError) as excinfo:
        CertificateBinding.model_validate(raw)
    assert error_locations(excinfo) == [("spec",)]


def test_managed_certificate_needs_a_subject() -> None:
    with pytest.raises(ValidationError, match=models.SUBJECT_REQUIRED_MESSAGE) as excinfo:
        CertificateBindingSpec.model_validate(
            {"certificate": {"secretName": "s", "issuerRef": {"name": "i"}}}
        )
    assert error_locations(excinfo) == [("certificate",)]


@pytest.mark.parametrize(
    ("change", "location", "error_type"),
    [
        (lambda s: s["certificate"].pop("secretName"), ("certificate", "secretName"), "missing"),
        (
            lambda s: s["certificate"]["issuerRef"].pop("name"),
            ("certificate", "issuerRef", "name"),
            "missing",
        ),
        (
            lambda s: s["certificate"]["privateKey"].update(algorithm="DSA"),
            ("certificate", "privateKey", "algorithm"),
            "enum",
        ),
        (
            lambda s: s["certificate"].update(usages=["server auth", "world domination"]),
            ("certificate", "usages", 1),
            "enum",
        ),
        (
            lambda s: s["syncPolicy"].update(deletionPolicy="Orphan"),
            ("syncPolicy", "deletionPolicy"),
            "enum",
        ),
        (
            lambda s: s["syncPolicy"].update(maxRetries=-1),
            ("syncPolicy", "maxRetries"),
            "greater_than_equal",
        ),
        (
            lambda s: s["syncPolicy"].update(maxRetry=3),
            ("syncPolicy", "maxRetry"),
            "extra_forbidden",
        ),
        (
            lambda s: s["destinations"][1].update(name="KV_prod"),
            ("destinations", 1, "name"),
            "string_pattern_mismatch",
        ),
        (
            lambda s: s["destinations"][2].update(type="Bad Type"),
            ("destinations", 2, "type"),
            "string_pattern_mismatch",
        ),
        (
            lambda s: s["destinations"][0].pop("type"),
            ("destinations", 0, "type"),
            "missing",
        ),
        (
            lambda s: s["certificate"].update(secretName="Web_TLS"),
            ("certificate", "secretName"),
            "string_pattern_mismatch",
        ),
        (
            lambda s: s["validation"].update(minRemainingValidity="1 day"),
            ("validation", "minRemainingValidity"),
            "value_error",
        ),
    ],
)
def test_bad_input_names_the_field(change: Any, location: tuple[Any, ...], error_type: str) -> None:
    raw = design_example()["spec"]
    change(raw)
    with pytest.raises(ValidationError) as excinfo:
        CertificateBindingSpec.model_validate(raw)
    [error] = excinfo.value.errors()
    assert (tuple(error["loc"]), error["type"]) == (location, error_type)


def test_destination_types_a_plugin_may_register() -> None:
    for type_ in ("reflector", "azure-key-vault", "aws-acm", "vendor.example.com/thing"):
        spec = CertificateBindingSpec.model_validate(
            {**minimal_spec(), "destinations": [{"name": "d", "type": type_}]}
        )
        assert spec.destinations[0].type == type_


def test_duplicate_destination_names_are_refused() -> None:
    raw = {
        **minimal_spec(),
        "destinations": [{"name": "a", "type": "reflector"}, {"name": "a", "type": "aws-acm"}],
    }
    with pytest.raises(ValidationError, match="duplicate name 'a'"):
        CertificateBindingSpec.model_validate(raw)


def test_at_most_64_destinations() -> None:
    raw = {
        **minimal_spec(),
        "destinations": [{"name": f"d{i}", "type": "reflector"} for i in range(65)],
    }
    with pytest.raises(ValidationError) as excinfo:
        CertificateBindingSpec.model_validate(raw)
    assert error_locations(excinfo) == [("destinations",)]


def test_wrong_kind_is_refused() -> None:
    raw = design_example()
    raw["kind"] = "Certificate"
    with pytest.raises(ValidationError) as excinfo:
        CertificateBinding.model_validate(raw)
    assert error_locations(excinfo) == [("kind",)]


def test_status_tolerates_fields_it_does_not_know() -> None:
    # Written by a newer operator: read it, do not crash on it.
    status = CertificateBindingStatus.model_validate({"source": "secret/x", "shinyNewField": 1})
    assert status.source == "secret/x"


# --- Status serialization -----------------------------------------------------------

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def synced_status() -> CertificateBindingStatus:
    return CertificateBindingStatus(
        observed_generation=2,
        conditions=conditions.set_condition((), "Ready", True, reason="Ready", now=T0),
        certificate=models.CertificateStatus(
            serial_number="01", not_after=T0 + timedelta(days=90), dns_names=("a.example.com",)
        ),
        destinations=(
            DestinationStatus(
                name="acm",
                type="aws-acm",
                state=DestinationState.SYNCED,
                external_id="arn:aws:acm:eu-west-1:1:certificate/x",
                last_sync_time=T0,
                attempts=0,
            ),
        ),
        source="secret/web-tls",
        synced_destinations="1/1",
        not_after=T0 + timedelta(days=90),
    )


def test_status_to_dict_is_the_wire_form() -> None:
    assert synced_status().to_dict() == {
        "observedGeneration": 2,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "lastTransitionTime": "2025-01-01T12:00:00Z",
                "reason": "Ready",
                "message": "",
            }
        ],
        "certificate": {
            "serialNumber": "01",
            "notAfter": "2025-04-01T12:00:00Z",
            "dnsNames": ["a.example.com"],
        },
        "destinations": [
            {
                "name": "acm",
                "type": "aws-acm",
                "state": "Synced",
                "externalID": "arn:aws:acm:eu-west-1:1:certificate/x",
                "lastSyncTime": "2025-01-01T12:00:00Z",
                "attempts": 0,
            }
        ],
        "source": "secret/web-tls",
        "syncedDestinations": "1/1",
        "notAfter": "2025-04-01T12:00:00Z",
    }


def test_status_round_trips() -> None:
    status = synced_status()
    assert CertificateBindingStatus.model_validate(status.to_dict()) == status


def test_to_patch_clears_what_the_status_no_longer_has() -> None:
    patch = CertificateBindingStatus(source="secret/web-tls").to_patch()
    status = patch["status"]
    assert status["source"] == "secret/web-tls"
    # A merge patch deletes a field with null: a stale certificate or expiry must go.
    assert status["certificate"] is None
    assert status["notAfter"] is None
    assert status["observedGeneration"] is None
    assert status["conditions"] is None
    assert status["destinations"] is None


def test_to_patch_keeps_lists_free_of_nulls() -> None:
    patch = synced_status().to_patch()["status"]
    # Lists are replaced whole by a merge patch: their items carry set fields only.
    assert patch["destinations"] == synced_status().to_dict()["destinations"]
    assert patch["conditions"] == synced_status().to_dict()["conditions"]
    # Nested objects get nulls, so a field dropped from them is deleted too.
    assert patch["certificate"]["issuer"] is None
    assert patch["certificate"]["dnsNames"] == ["a.example.com"]
    emptied = synced_status().model_copy(
        update={"certificate": models.CertificateStatus(serial_number="02")}
    )
    assert emptied.to_patch()["status"]["certificate"]["dnsNames"] is None
    assert patch["certificate"]["serialNumber"] == "01"


def test_timestamps_are_utc_to_the_second() -> None:
    cest = timezone(timedelta(hours=2))
    status = DestinationStatus(
        name="a",
        type="reflector",
        state=DestinationState.PENDING,
        last_attempt_time=datetime(2025, 1, 1, 14, 0, 0, 999_999, tzinfo=cest),
    )
    assert status.last_attempt_time == datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert status.to_dict()["lastAttemptTime"] == "2025-01-01T12:00:00Z"
    parsed = DestinationStatus.model_validate(
        {"name": "a", "type": "t", "state": "Pending", "lastAttemptTime": "2025-01-01T12:00:00.5Z"}
    )
    assert parsed.last_attempt_time == datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValidationError) as excinfo:
        DestinationStatus.model_validate(
            {"name": "a", "type": "t", "state": "Pending", "lastAttemptTime": datetime(2025, 1, 1)}
        )
    assert error_locations(excinfo) == [("lastAttemptTime",)]


def test_bad_destination_state_names_the_field() -> None:
    with pytest.raises(ValidationError) as excinfo:
        CertificateBindingStatus.model_validate(
            {"destinations": [{"name": "a", "type": "t", "state": "Done"}]}
        )
    assert error_locations(excinfo) == [("destinations", 0, "state")]


# --- Conditions -----------------------------------------------------------------------


def test_set_condition_appends_a_new_type() -> None:
    result = conditions.set_condition(
        (), ConditionType.READY, False, reason="Pending", observed_generation=4, now=T0
    )
    assert result == (
        Condition(
            type="Ready",
            status=ConditionStatus.FALSE,
            observed_generation=4,
            last_transition_time=T0,
            reason="Pending",
            message="",
        ),
    )


def test_same_status_keeps_the_transition_time() -> None:
    first = conditions.set_condition((), "Ready", False, reason="Pending", now=T0)
    later = T0 + timedelta(minutes=5)
    second = conditions.set_condition(
        first, "Ready", False, reason="Retrying", message="acm: throttled", now=later
    )
    [ready] = second
    assert ready.last_transition_time == T0
    assert (ready.reason, ready.message) == ("Retrying", "acm: throttled")


def test_a_status_change_moves_the_transition_time() -> None:
    first = conditions.set_condition((), "Ready", False, reason="Pending", now=T0)
    later = T0 + timedelta(minutes=5)
    [ready] = conditions.set_condition(first, "Ready", True, reason="Ready", now=later)
    assert ready.last_transition_time == later
    assert ready.status is ConditionStatus.TRUE


def test_an_unchanged_condition_leaves_the_list_equal() -> None:
    start = conditions.set_condition((), "Validated", True, reason="Valid", now=T0)
    start = conditions.set_condition(start, "Ready", True, reason="Ready", now=T0)
    again = conditions.set_condition(
        start, "Validated", True, reason="Valid", now=T0 + timedelta(hours=1)
    )
    assert again == start


def test_set_condition_replaces_in_place_and_keeps_order() -> None:
    start = conditions.set_condition((), "Validated", True, reason="Valid", now=T0)
    start = conditions.set_condition(start, "Synced", True, reason="AllSynced", now=T0)
    start = conditions.set_condition(start, "Ready", True, reason="Ready", now=T0)
    updated = conditions.set_condition(
        start, "Synced", ConditionStatus.FALSE, reason="Failed", observed_generation=5, now=T0
    )
    assert [c.type for c in updated] == ["Validated", "Synced", "Ready"]
    synced = conditions.find_condition(updated, "Synced")
    assert synced is not None
    assert synced.observed_generation == 5
    assert not conditions.is_condition_true(updated, "Synced")
    assert conditions.is_condition_true(updated, "Ready")
    assert not conditions.is_condition_true(updated, "Missing")
    assert [c.type for c in conditions.remove_condition(updated, "Synced")] == [
        "Validated",
        "Ready",
    ]


def test_set_condition_defaults_now_to_the_current_time() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    [ready] = conditions.set_condition((), "Ready", True, reason="Ready")
    assert before <= ready.last_transition_time <= datetime.now(UTC)


def test_set_condition_refuses_a_malformed_reason() -> None:
    with pytest.raises(ValidationError) as excinfo:
        conditions.set_condition((), "Ready", True, reason="not a reason", now=T0)
    assert error_locations(excinfo) == [("reason",)]
