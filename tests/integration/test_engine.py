"""The engine end to end: the real operator, a real API server, a small in-test destination.

The destination type here (``memory``) keeps what it was given in a dict, and
can be told to fail, so the core's behaviour — validation, retries, states,
conditions, finalizer, steady state — is tested without any cloud. The
destination plugins prove themselves in their own packages' tests.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from pydantic import BaseModel, ConfigDict, Field

from certauto_core.certs.material import CertificateMaterial
from certauto_core.kube.resources import CERTIFICATE_BINDINGS, EVENTS, SECRETS
from certauto_core.plugins.contract import (
    DestinationType,
    Observation,
    PluginContext,
    PublishResult,
    RetractResult,
    Target,
)
from certauto_core.plugins.errors import ConflictError, PermanentError, RetryableError
from certauto_core.plugins.hookspecs import hookimpl
from certauto_core.plugins.manager import PluginManager
from certauto_core.testing.certs import CertFactory, IssuedCert, PrivateKeyEncoding
from certauto_core.testing.controlplane.process import ControlPlane
from certauto_core.testing.operator import OperatorHarness, api_writes, running_operator


class MemoryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    bucket: str = Field(min_length=1)
    fail_times: int = Field(default=0, alias="failTimes")
    fail_mode: str = Field(default="retryable", alias="failMode")


@dataclass
class Held:
    fingerprint: str
    content_hash: str
    not_after: datetime


@dataclass
class MemoryWorld:
    """What every memory destination holds, and how often it was written."""

    held: dict[str, Held] = field(default_factory=dict)
    publishes: int = 0
    retracts: list[tuple[str, bool]] = field(default_factory=list)
    failures_left: dict[str, int] = field(default_factory=dict)


WORLD = MemoryWorld()


class MemoryDestination:
    async def check_material(self, material: CertificateMaterial, target: Target) -> None:
        return None

    async def observe(self, target: Target) -> Observation:
        held = WORLD.held.get(_slot(target))
        if held is None:
            return Observation(fingerprint=None)
        return Observation(
            fingerprint=held.fingerprint,
            content_hash=held.content_hash,
            external_id=_slot(target),
            not_after=held.not_after,
        )

    async def publish(self, material: CertificateMaterial, target: Target) -> PublishResult:
        assert isinstance(target.config, MemoryConfig)
        slot = _slot(target)
        left = WORLD.failures_left.setdefault(slot, target.config.fail_times)
        if left > 0:
            WORLD.failures_left[slot] = left - 1
            mode = target.config.fail_mode
            if mode == "permanent":
                raise PermanentError(f"bucket {target.config.bucket} refuses")
            if mode == "conflict":
                raise ConflictError(f"bucket {target.config.bucket} holds someone else's")
            raise RetryableError(f"bucket {target.config.bucket} is busy")
        WORLD.publishes += 1
        WORLD.held[slot] = Held(
            material.fingerprint, material.content_hash, material.info.not_after
        )
        return PublishResult(
            fingerprint=material.fingerprint,
            external_id=slot,
            not_after=material.info.not_after,
            message=f"stored in {target.config.bucket}",
        )

    async def retract(self, target: Target, *, delete: bool) -> RetractResult:
        WORLD.retracts.append((_slot(target), delete))
        if delete:
            WORLD.held.pop(_slot(target), None)
        return RetractResult(removed=delete)

    async def aclose(self) -> None:
        return None


def _slot(target: Target) -> str:
    return target.binding.key


class MemoryPlugin:
    @hookimpl
    def certauto_destination_types(self) -> list[DestinationType]:
        def factory(context: PluginContext) -> MemoryDestination:
            return MemoryDestination()

        return [DestinationType(name="memory", config_model=MemoryConfig, factory=factory)]


@pytest_asyncio.fixture(loop_scope="session")
async def harness(control_plane: ControlPlane) -> AsyncIterator[OperatorHarness]:
    WORLD.held.clear()
    WORLD.retracts.clear()
    WORLD.failures_left.clear()
    WORLD.publishes = 0
    plugins = PluginManager()
    plugins.register(MemoryPlugin(), name="memory-test-plugin")
    async with running_operator(control_plane, plugins=plugins) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session", autouse=True)
async def delete_bindings_afterwards(
    harness: OperatorHarness, namespace: str
) -> AsyncIterator[None]:
    """Leave no binding behind: later tests count writes cluster-wide."""
    yield
    listing = await harness.kube.get(CERTIFICATE_BINDINGS.path(namespace))
    for item in listing["items"]:
        await harness.delete_binding(namespace, item["metadata"]["name"])
    for item in listing["items"]:
        await harness.wait_gone(namespace, item["metadata"]["name"])


@pytest.fixture(scope="module")
def issued() -> tuple[CertFactory, IssuedCert]:
    factory = CertFactory()
    root = factory.root_ca()
    return factory, root


def _leaf(issued: tuple[CertFactory, IssuedCert], name: str = "web.example.test") -> IssuedCert:
    factory, root = issued
    return factory.leaf(factory.intermediate_ca(root), [name])


def _spec(*destinations: dict[str, Any], **policy: Any) -> dict[str, Any]:
    return {
        "sourceSecretRef": {"name": "web-tls"},
        "destinations": list(destinations),
        "syncPolicy": {"retryInterval": "1s", **policy},
    }


def memory(name: str, **config: Any) -> dict[str, Any]:
    return {"name": name, "type": "memory", "config": {"bucket": name, **config}}


async def test_a_binding_becomes_ready_and_reports_each_destination(
    harness: OperatorHarness, namespace: str, issued: tuple[CertFactory, IssuedCert]
) -> None:
    leaf = _leaf(issued)
    await harness.put_tls_secret(namespace, "web-tls", leaf.secret_data())
    await harness.create_binding(namespace, "web", _spec(memory("a"), memory("b")))
    obj = await harness.wait_condition(namespace, "web", "Ready", "True")
    status = obj["status"]
    assert {d["name"]: d["state"] for d in status["destinations"]} == {"a": "Synced", "b": "Synced"}
    assert {d["syncedFingerprint"] for d in status["destinations"]} == {leaf.fingerprint}
    assert status["certificate"]["sha256Fingerprint"] == leaf.fingerprint
    assert status["certificate"]["dnsNames"] == ["web.example.test"]
    assert status["syncedDestinations"] == "2/2"
    assert status["source"] == "secret/web-tls"
    assert "certauto.sanorg.in/cleanup" in obj["metadata"]["finalizers"]
    secret = await harness.kube.get(SECRETS.path(namespace, "web-tls"))
    assert secret["metadata"]["labels"]["certauto.sanorg.in/watched"] == "true"
    assert WORLD.held[f"{namespace}/web/a"].fingerprint == leaf.fingerprint


async def test_rotation_reaches_every_destination(
    harness: OperatorHarness, namespace: str, issued: tuple[CertFactory, IssuedCert]
) -> None:
    first, second = _leaf(issued), _leaf(issued)
    await harness.put_tls_secret(namespace, "web-tls", first.secret_data())
    await harness.create_binding(namespace, "web", _spec(memory("a"), memory("b")))
    await harness.wait_condition(namespace, "web")
    await harness.put_tls_secret(namespace, "web-tls", second.secret_data())
    for name in ("a", "b"):
        await harness.wait_destination(
            namespace, "web", name, "Synced", fingerprint=second.fingerprint
        )
    assert WORLD.held[f"{namespace}/web/b"].fingerprint == second.fingerprint


def _bad_sources(issued: tuple[CertFactory, IssuedCert]) -> dict[str, dict[str, bytes]]:
    factory, root = issued
    intermediate = factory.intermediate_ca(root)
    leaf = factory.leaf(intermediate, ["web.example.test"])
    other = factory.leaf(intermediate, ["other.example.test"], fresh_key=True)
    now = datetime.now(UTC)
    expired = factory.leaf(
        intermediate,
        ["web.example.test"],
        not_before=now - timedelta(days=30),
        not_after=now - timedelta(days=1),
    )
    future = factory.leaf(
        intermediate,
        ["web.example.test"],
        not_before=now + timedelta(days=1),
        not_after=now + timedelta(days=90),
    )
    short = factory.leaf(
        intermediate,
        ["web.example.test"],
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(hours=2),
    )
    good = leaf.secret_data()
    return {
        "MissingPrivateKey": {"tls.crt": good["tls.crt"]},
        "InvalidCertificatePEM": {
            "tls.crt": b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
            "tls.key": good["tls.key"],
        },
        "KeyMismatch": leaf.secret_data(key=other),
        "Expired": expired.secret_data(),
        "NotYetValid": future.secret_data(),
        "ChainOrder": leaf.secret_data(certificates=[leaf, root, intermediate]),
        "InsufficientValidity": short.secret_data(),
    }


@pytest.mark.parametrize(
    "reason",
    [
        "MissingPrivateKey",
        "InvalidCertificatePEM",
        "KeyMismatch",
        "Expired",
        "NotYetValid",
        "ChainOrder",
        "InsufficientValidity",
    ],
)
async def test_a_bad_source_is_refused_and_destinations_keep_the_last_good_one(
    harness: OperatorHarness, namespace: str, issued: tuple[CertFactory, IssuedCert], reason: str
) -> None:
    good = _leaf(issued)
    await harness.put_tls_secret(namespace, "web-tls", good.secret_data(), secret_type="Opaque")
    await harness.create_binding(namespace, "web", _spec(memory("a")))
    await harness.wait_condition(namespace, "web")
    published = WORLD.publishes

    await harness.put_tls_secret(
        namespace, "web-tls", _bad_sources(issued)[reason], secret_type="Opaque"
    )
    obj = await harness.wait_condition(namespace, "web", "Validated", "False", reason=reason)
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == reason
    assert ready["message"]
    await harness.settle()
    assert WORLD.publishes == published
    assert WORLD.held[f"{namespace}/web/a"].fingerprint == good.fingerprint
    events = await harness.kube.get(EVENTS.path(namespace))
    assert any(e["reason"] == reason and e["type"] == "Warning" for e in events["items"])
    assert (
        harness.operator.metrics.validation_failures_total.labels(reason=reason)._value.get() >= 1
    )


async def test_pkcs1_and_sec1_keys_are_accepted(
    harness: OperatorHarness, namespace: str, issued: tuple[CertFactory, IssuedCert]
) -> None:
    factory, root = issued
    from certauto_core.testing.certs import KeyType

    rsa_leaf = _leaf(issued)
    ec_leaf = factory.leaf(root, ["ec.example.test"], key_type=KeyType.ECDSA_P256)
    await harness.put_tls_secret(
        namespace, "web-tls", rsa_leaf.secret_data(key_encoding=PrivateKeyEncoding.PKCS1)
    )
    await harness.put_tls_secret(
        namespace, "ec-tls", ec_leaf.secret_data(key_encoding=PrivateKeyEncoding.SEC1)
    )
    await harness.create_binding(namespace, "rsa", _spec(memory("a")))
    await harness.create_binding(
        namespace, "ec", {**_spec(memory("a")), "sourceSecretRef": {"name": "ec-tls"}}
    )
    await harness.wait_condition(namespace, "rsa")
    await harness.wait_condition(namespace, "ec")


async def test_unknown_type_and_bad_config_fail_alone(
    harness: OperatorHarness, namespace: str, issued: tuple[CertFactory, IssuedCert]
) -> None:
    await harness.put_tls_secret(namespace, "web-tls", _leaf(issued).secret_data())
    spec = _spec(
        memory("good"),
        {"name": "mystery", "type": "no-such-type", "config": {}},
        {"name": "broken", "type": "memory", "config": {"bucket": "", "colour": "red"}},
    )
    await harness.create_binding(namespace, "web", spec)
    await harness.wait_destination(namespace, "web", "good", "Synced")
    mystery = await harness.wait_destination(namespace, "web", "mystery", "Failed")
    assert "no-such-type" in mystery["message"]
    assert "memory" in mystery["message"]  # the known types are listed
    broken = await harness.wait_destination(namespace, "web", "broken", "Failed")
    assert "bucket" in broken["message"]
    assert "colour" in broken["message"]
    obj = await harness.wait_condition(
        namespace, "web", "Ready", "False", reason="DestinationFailed"
    )
    assert obj["status"]["syncedDestinations"] == "1/3"


async def test_retryable_failures_are_retried_until_synced(
    harness: OperatorHarness, namespace: str, issued: tuple[CertFactory, IssuedCert]
) -> None:
    await harness.put_tls_secret(namespace, "web-tls", _leaf(issued).secret_data())
    await harness.create_binding(namespace, "web", _spec(memory("flaky", failTimes=2)))
    retrying = await harness.wait_destination(namespace, "web", "flaky", "Retrying")
    assert retrying["attempts"] >= 1
    assert "busy" in retrying["message"]
    assert "nextRetryTime" in retrying
    synced = await harness.wait_destination(namespace, "web", "flaky", "Synced", timeout=30)
    assert synced["attempts"] == 0


async def test_retries_stop_after_max_retries(
    harness: OperatorHarness, namespace: str, issued: tuple[CertFactory, IssuedCert]
) -> None:
    await harness.put_tls_secret(namespace, "web-tls", _leaf(issued).secret_data())
    spec = _spec(memory("down", failTimes=100), maxRetries=1)
    await harness.create_binding(namespace, "web", spec)
    failed = await harness.wait_destination(namespace, "web", "down", "Failed", timeout=30)
    assert failed["attempts"] == 2
    assert "gave up after 2 attempts" in failed["message"]


async def test_permanent_and_conflict_errors_set_their_states(
    harness: OperatorHarness, namespace: str, issued: tuple[CertFactory, IssuedCert]
) -> None:
    await harness.put_tls_secret(namespace, "web-tls", _leaf(issued).secret_data())
    spec = _spec(
        memory("refuses", failTimes=100, failMode="permanent"),
        memory("taken", failTimes=100, failMode="conflict"),
    )
    await harness.create_binding(namespace, "web", spec)
    assert (
        "refuses"
        in (await harness.wait_destination(namespace, "web", "refuses", "Failed"))["message"]
    )
    assert (
        "someone else"
        in (await harness.wait_destination(namespace, "web", "taken", "Conflict"))["message"]
    )
    await harness.wait_condition(namespace, "web", "Ready", "False", reason="DestinationConflict")


@pytest.mark.parametrize(("policy", "removed"), [("Delete", True), ("Retain", False)])
async def test_deletion_policy_is_applied_then_the_finalizer_released(
    harness: OperatorHarness,
    namespace: str,
    issued: tuple[CertFactory, IssuedCert],
    policy: str,
    removed: bool,
) -> None:
    await harness.put_tls_secret(namespace, "web-tls", _leaf(issued).secret_data())
    await harness.create_binding(namespace, "web", _spec(memory("a"), deletionPolicy=policy))
    await harness.wait_condition(namespace, "web")
    await harness.delete_binding(namespace, "web")
    await harness.wait_gone(namespace, "web")
    assert (f"{namespace}/web/a", removed) in WORLD.retracts
    assert (f"{namespace}/web/a" in WORLD.held) is not removed


async def test_suspend_stops_syncing(
    harness: OperatorHarness, namespace: str, issued: tuple[CertFactory, IssuedCert]
) -> None:
    first, second = _leaf(issued), _leaf(issued)
    await harness.put_tls_secret(namespace, "web-tls", first.secret_data())
    await harness.create_binding(namespace, "web", _spec(memory("a")))
    await harness.wait_condition(namespace, "web")
    await harness.patch_spec(namespace, "web", {"syncPolicy": {"suspend": True}})
    await harness.wait_condition(namespace, "web", "Ready", "False", reason="Suspended")
    await harness.put_tls_secret(namespace, "web-tls", second.secret_data())
    await harness.settle()
    assert WORLD.held[f"{namespace}/web/a"].fingerprint == first.fingerprint
    await harness.patch_spec(namespace, "web", {"syncPolicy": {"suspend": False}})
    await harness.wait_destination(namespace, "web", "a", "Synced", fingerprint=second.fingerprint)


async def test_a_steady_state_resync_writes_nothing(
    harness: OperatorHarness,
    namespace: str,
    issued: tuple[CertFactory, IssuedCert],
    control_plane: ControlPlane,
) -> None:
    await harness.put_tls_secret(namespace, "web-tls", _leaf(issued).secret_data())
    for index in range(5):
        await harness.create_binding(namespace, f"web-{index}", _spec(memory("a"), memory("b")))
    for index in range(5):
        await harness.wait_condition(namespace, f"web-{index}")
    await harness.settle()
    ours = ("secrets", "certificatebindings", "events")
    writes_before = api_writes(control_plane, ours)
    client_writes = harness.operator.kube.writes if harness.operator.kube else -1
    published = WORLD.publishes
    logging.getLogger("certauto.kube").setLevel(logging.DEBUG)
    await harness.resync()
    await harness.resync()
    assert api_writes(control_plane, ours) - writes_before == 0
    assert harness.operator.kube is not None
    assert harness.operator.kube.writes == client_writes
    assert WORLD.publishes == published


async def test_no_key_material_in_logs_events_status_or_metrics(
    harness: OperatorHarness,
    namespace: str,
    issued: tuple[CertFactory, IssuedCert],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    leaf = _leaf(issued)
    bad = _bad_sources(issued)
    data = leaf.secret_data(key_encoding=PrivateKeyEncoding.PKCS1)
    await harness.put_tls_secret(namespace, "web-tls", data)
    spec = _spec(
        memory("a"), memory("flaky", failTimes=1), {"name": "x", "type": "nope", "config": {}}
    )
    await harness.create_binding(namespace, "web", spec)
    await harness.wait_destination(namespace, "web", "flaky", "Synced")
    await harness.put_tls_secret(namespace, "web-tls", bad["KeyMismatch"])
    await harness.wait_condition(namespace, "web", "Validated", "False", reason="KeyMismatch")
    await harness.settle()

    obj = await harness.get_binding(namespace, "web")
    events = await harness.kube.get(EVENTS.path(namespace))
    metrics, _ = harness.operator.metrics.render()
    haystacks = {
        "logs": caplog.text,
        "events": repr(events),
        "status": repr(obj),
        "metrics": metrics.decode(),
    }
    for key_pem in (data["tls.key"], bad["KeyMismatch"]["tls.key"]):
        body = b"".join(key_pem.splitlines()[1:-1]).decode()
        needles = [
            "PRIVATE KEY",
            body[:40],
            base64.b64encode(key_pem).decode()[:40],
        ]
        for where, text in haystacks.items():
            for needle in needles:
                assert needle not in text, f"key material in {where}"
    assert re.search(r"KeyMismatch", haystacks["events"])


async def test_the_operator_serves_metrics_health_and_readiness(
    harness: OperatorHarness, namespace: str, issued: tuple[CertFactory, IssuedCert]
) -> None:
    import aiohttp

    await harness.put_tls_secret(namespace, "web-tls", _leaf(issued).secret_data())
    await harness.create_binding(namespace, "web", _spec(memory("a")))
    await harness.wait_condition(namespace, "web")
    assert harness.operator.health is not None
    base = f"http://127.0.0.1:{harness.operator.health.port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/healthz") as response:
            assert response.status == 200
        async with session.get(f"{base}/readyz") as response:
            assert response.status == 200
            assert (await response.json())["ready"] is True
        async with session.get(f"{base}/metrics") as response:
            text = await response.text()
    assert 'certauto_sync_total{result="synced",type="memory"}' in text
    assert (
        f'certauto_certificate_expiry_timestamp_seconds{{binding="web",namespace="{namespace}"}}'
        in text
    )
    assert "certauto_queue_depth" in text
