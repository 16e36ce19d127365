"""The conformance kit: one base test class that every destination plugin's tests subclass.

The kit holds a destination type to the contract in ``docs/plugin-contract.md``
by driving it exactly the way the core does (``check_material``, ``observe``, then
``publish`` only when :func:`~certauto_core.plugins.contract.needs_publish` says so;
``retract`` on deletion) against a real destination: a real API server, an
emulator, or the real service. Our own plugins use the same class, the way
fsspec's implementations subclass its abstract filesystem tests.

What it proves, test by test:

* the first sync publishes and ``observe`` then reports the published fingerprint;
* a second sync, and ``observe`` alone, make **zero** writes (counted at the
  destination, not by the plugin);
* a renewed certificate (same names, new key) is published, under the same
  ``external_id``, and observed;
* drift made out of band (:meth:`DestinationConformance.tamper`) is detected by
  ``observe`` and repaired by the next sync, which is then a steady state again;
* lost status (empty ``PreviousSync``) creates no duplicate: objects are found by
  their marks;
* ``retract(delete=True)`` removes everything (also for an entry removed from the
  spec, whose ``config`` is ``None``), ``retract(delete=False)`` keeps it; both
  succeed twice;
* bad configs are refused by the core's ``PluginManager.validate_config`` with a
  :class:`~certauto_core.plugins.errors.ConfigError` naming the field;
* ``check_material`` refuses what the type cannot take and accepts the rest;
* an object the destination does not own makes a
  :class:`~certauto_core.plugins.errors.ConflictError` and is left untouched;
* the type is installed through the ``certauto.destinations`` entry point;
* every error is a typed :class:`~certauto_core.plugins.errors.DestinationError`,
  and no message (errors, ``drift``, results) contains key material.

How to use it
-------------

In the plugin's ``tests/conftest.py``::

    pytest_plugins = ["certauto_core.testing.pytest_plugin"]

and in a test module::

    from certauto_core.testing.conformance import BadConfig, ConformanceCase, DestinationConformance

    class TestExampleConformance(DestinationConformance):
        bad_configs = {
            "missing-name": BadConfig({}, field="config.certificateName"),
        }

        @pytest.fixture
        def destination_type(self) -> DestinationType:
            return EXAMPLE  # the record your hook returns

        async def make_config(self, case: ConformanceCase) -> Mapping[str, Any]:
            return {"certificateName": f"c-{case.binding.uid[:8]}"}

        async def tamper(self, case: ConformanceCase) -> None:
            ...  # change or delete what the destination holds, behind the plugin's back

        async def count_writes(self, case: ConformanceCase) -> int:
            ...  # writes the destination has received so far (API server metrics,
                 # an emulator's request log): never the plugin's own counter

A subclass must provide the ``destination_type`` fixture and the
:meth:`~DestinationConformance.make_config`, :meth:`~DestinationConformance.tamper`
and :meth:`~DestinationConformance.count_writes` methods; everything else has a
default it may override:

* class attributes :attr:`~DestinationConformance.bad_configs`,
  :attr:`~DestinationConformance.unsupported_materials`,
  :attr:`~DestinationConformance.supported_key_types`,
  :attr:`~DestinationConformance.key_type`,
  :attr:`~DestinationConformance.with_ca_bundle`,
  :attr:`~DestinationConformance.stable_external_id`,
  :attr:`~DestinationConformance.exact_write_count`,
  :attr:`~DestinationConformance.installed_by_entry_point`,
  :attr:`~DestinationConformance.settle_timeout`;
* methods :meth:`~DestinationConformance.plant_foreign` (the conflict test is
  skipped without it) and :meth:`~DestinationConformance.assert_retained`;
* fixtures ``plugin_context`` (default: :func:`live_plugin_context` over the
  admin client of the test control plane) and ``binding`` (default: a binding in
  a fresh namespace, named ``conformance``, destination ``under-test``).

Hooks receive a :class:`ConformanceCase`: the binding, the destination, its
validated config, the context, certificates, an :class:`~contextlib.AsyncExitStack`
for clean-ups (``case.cleanup``), ``case.request`` to reach any other pytest
fixture, and ``case.scratch`` for state shared between a subclass's hooks.
Plugin-specific tests in the same class can use ``conformance_case`` and its
helpers (``sync``, ``observe``, ``new_material``) too.

The kit marks its coroutine tests and fixtures for pytest-asyncio's session
loop, so it works in ``strict`` and ``auto`` mode alike.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import anyio
import pytest
import pytest_asyncio
from kubernetes_asyncio import client
from pydantic import BaseModel

from certauto_core.certs.material import CertificateMaterial
from certauto_core.kube.client import KubeClient
from certauto_core.plugins.contract import (
    BindingRef,
    Destination,
    DestinationType,
    Observation,
    PluginContext,
    PreviousSync,
    PublishResult,
    RetractResult,
    Target,
    needs_publish,
)
from certauto_core.plugins.errors import (
    ConfigError,
    ConflictError,
    DestinationError,
    PermanentError,
)
from certauto_core.plugins.hookspecs import hookimpl
from certauto_core.plugins.manager import PluginManager
from certauto_core.testing.certs import CertFactory, IssuedCert, KeyType
from certauto_core.testing.plugin_context import live_plugin_context

__all__ = [
    "BadConfig",
    "ConformanceCase",
    "DestinationConformance",
    "MaterialRecipe",
    "assert_no_key_material",
]

T = TypeVar("T")

MaterialRecipe = Callable[[CertFactory, IssuedCert], CertificateMaterial]
"""Makes a material from a factory and the case's issuing CA (an intermediate)."""

_session_loop = pytest.mark.asyncio(loop_scope="session")


@dataclass(frozen=True)
class BadConfig:
    """A raw ``config`` the type must refuse, and the field the message must name.

    ``field`` is matched as a substring of the :class:`ConfigError` message, whose
    lines read ``config.<field path>: <problem>`` (``config.namespaceSelector.
    matchExpressions[0].operator``); for a rule about several fields, name the
    words the message must contain.
    """

    config: Mapping[str, Any]
    field: str


def assert_no_key_material(text: str | None, materials: Iterable[CertificateMaterial]) -> None:
    """Fail when ``text`` contains a private key, in PEM or as Secret-style base64."""
    if not text:
        return
    assert "PRIVATE KEY" not in text, f"a message contains a PEM private key marker: {text!r}"
    for material in materials:
        for pem in (material.private_key_pem_pkcs8(), material.private_key_pem_traditional()):
            body = [line for line in pem.decode().splitlines() if not line.startswith("-----")]
            for line in body:
                if len(line) >= 32:
                    assert line not in text, "a message contains private key material"
            encoded = base64.b64encode(pem).decode()
            assert encoded[:48] not in text, "a message contains a base64-encoded private key"


class _TypeUnderTest:
    """An in-process plugin returning the type under test, as the core would load it."""

    def __init__(self, destination_type: DestinationType) -> None:
        self._destination_type = destination_type

    @hookimpl
    def certauto_destination_types(self) -> list[DestinationType]:
        return [self._destination_type]


@dataclass
class ConformanceCase:
    """One test's world: a binding's destination entry, its config, its certificates.

    ``target`` is built like the core builds it, with ``previous`` updated after
    every :meth:`sync` the way status would be.
    """

    request: pytest.FixtureRequest
    destination_type: DestinationType
    destination: Destination
    context: PluginContext
    manager: PluginManager
    binding: BindingRef
    certs: CertFactory
    root: IssuedCert
    issuer: IssuedCert
    with_ca_bundle: bool
    settle_timeout: float
    cleanup: AsyncExitStack
    dns_names: tuple[str, ...] = ("conformance.example.test", "www.conformance.example.test")
    raw_config: Mapping[str, Any] | None = None
    config: BaseModel | None = None
    previous: PreviousSync = field(default_factory=PreviousSync)
    materials: list[CertificateMaterial] = field(default_factory=list)
    scratch: dict[str, Any] = field(default_factory=dict)
    """Free for the subclass's hooks (names of what ``make_config`` created, say)."""

    @property
    def type_name(self) -> str:
        return self.destination_type.name

    @property
    def target(self) -> Target:
        """The target the core would pass now."""
        return Target(binding=self.binding, config=self.config, previous=self.previous)

    def new_material(
        self, *, key_type: KeyType | None = None, dns_names: Sequence[str] | None = None
    ) -> CertificateMaterial:
        """A new leaf from the case's CA: the same names by default, so a renewal."""
        leaf = self.certs.leaf(self.issuer, dns_names or self.dns_names, key_type=key_type)
        data = leaf.secret_data(ca=self.root) if self.with_ca_bundle else leaf.secret_data()
        return self.track(leaf.material(data))

    def track(self, material: CertificateMaterial) -> CertificateMaterial:
        """Remember a material so that messages are checked against its key."""
        self.materials.append(material)
        return material

    def forget_status(self) -> None:
        """Simulate lost status: ``previous`` becomes empty."""
        self.previous = PreviousSync()

    def check_message(self, text: str | None) -> None:
        assert_no_key_material(text, self.materials)

    # ------------------------------------------------------------------ driving
    async def call(self, what: str, operation: Awaitable[T]) -> T:
        """Await a destination method: typed errors pass (checked), anything else fails."""
        try:
            return await operation
        except DestinationError as error:
            failure = error
        except Exception as error:
            pytest.fail(
                f"{what} raised {type(error).__name__}, not a typed DestinationError "
                f"(RetryableError, PermanentError, ConflictError): {error}"
            )
        if not isinstance(failure.message, str) or not failure.message:
            pytest.fail(f"{what} raised {type(failure).__name__} without a message")
        self.check_message(failure.message)
        raise failure

    async def observe(self, target: Target | None = None) -> Observation:
        observation = await self.call("observe", self.destination.observe(target or self.target))
        assert isinstance(observation, Observation), f"observe returned {observation!r}"
        self.check_message(observation.drift)
        return observation

    async def sync(self, material: CertificateMaterial) -> PublishResult | None:
        """What the core does on a reconcile; returns the publish's result, if it ran."""
        target = self.target
        await self.call("check_material", self.destination.check_material(material, target))
        observation = await self.observe(target)
        if not needs_publish(observation, material):
            self.previous = PreviousSync(material.fingerprint, observation.external_id)
            return None
        result = await self.call("publish", self.destination.publish(material, target))
        assert isinstance(result, PublishResult), f"publish returned {result!r}"
        assert result.fingerprint == material.fingerprint, "publish reported another fingerprint"
        assert isinstance(result.writes, int)
        assert result.writes >= 0
        self.check_message(result.message)
        self.previous = PreviousSync(result.fingerprint, result.external_id)
        return result

    async def retract(self, *, delete: bool, target: Target | None = None) -> RetractResult:
        result = await self.call(
            "retract", self.destination.retract(target or self.target, delete=delete)
        )
        assert isinstance(result, RetractResult), f"retract returned {result!r}"
        self.check_message(result.message)
        return result

    async def wait_for_observation(
        self, accept: Callable[[Observation], bool], what: str
    ) -> Observation:
        """Observe until ``accept`` holds; destinations may see out-of-band changes late."""
        observation = await self.observe()
        with anyio.move_on_after(self.settle_timeout):
            while not accept(observation):
                await anyio.sleep(0.1)
                observation = await self.observe()
        assert accept(observation), (
            f"timed out after {self.settle_timeout}s waiting for observe to see {what}; "
            f"last observation: {observation!r}"
        )
        return observation


class DestinationConformance:
    """Subclass as ``Test<Something>Conformance`` to run the contract's tests on a type.

    See the module docstring for what to provide. Class attributes a subclass may set:
    """

    bad_configs: ClassVar[Mapping[str, BadConfig]] = {}
    """Raw configs that must be refused, by test id; each must name its field."""
    unsupported_materials: ClassVar[Mapping[str, MaterialRecipe]] = {}
    """Materials ``check_material`` must refuse with a PermanentError, by test id."""
    supported_key_types: ClassVar[Sequence[KeyType]] = (KeyType.RSA_2048, KeyType.ECDSA_P256)
    """Key types the type must accept and publish."""
    key_type: ClassVar[KeyType] = KeyType.RSA_2048
    """The key type of the certificates the other tests use (cert-manager's default)."""
    with_ca_bundle: ClassVar[bool] = True
    """Whether test materials carry a ``ca.crt`` bundle (the root)."""
    stable_external_id: ClassVar[bool] = True
    """Whether a renewal keeps ``external_id`` (an ARN, a certificate name, a namespace list)."""
    exact_write_count: ClassVar[bool] = False
    """Whether :meth:`count_writes` counts exactly what ``PublishResult.writes`` reports."""
    installed_by_entry_point: ClassVar[bool] = True
    """Whether the type must be found through the ``certauto.destinations`` entry point
    (the plugin is installed in the test environment)."""
    settle_timeout: ClassVar[float] = 20.0
    """Seconds to wait for ``observe`` to notice an out-of-band change."""

    # ------------------------------------------------------------------ to provide
    @pytest.fixture
    def destination_type(self) -> DestinationType:
        """The :class:`DestinationType` under test (override this fixture)."""
        pytest.fail(f"{type(self).__name__} must override the 'destination_type' fixture")

    async def make_config(self, case: ConformanceCase) -> Mapping[str, Any]:
        """A valid raw ``config`` for ``case.binding``; create what it needs (and register
        clean-ups on ``case.cleanup``). Called once per test, before anything else.

        Return only once the destination can see what was created: a destination
        reading the core's indexes (fed by watches) sees a new namespace a moment
        after it exists, so poll ``case.context`` until it does."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_config")

    async def tamper(self, case: ConformanceCase) -> None:
        """Make the destination drift out of band: edit or delete what it holds for
        ``case`` (after a successful sync), without going through the plugin.

        The kit then waits until ``observe`` notices and syncs once. A tamper that
        makes several changes must return only once the destination can see all of
        them (poll the context's indexes), or the repair may cover only the first."""
        raise NotImplementedError(f"{type(self).__name__} must implement tamper")

    async def count_writes(self, case: ConformanceCase) -> int:
        """How many writes the destination has received so far (a monotonic counter).

        Count at the destination (API server metrics, an emulator's request log), not
        with the plugin's own bookkeeping, so that a write the plugin forgot to count
        is still caught."""
        raise NotImplementedError(f"{type(self).__name__} must implement count_writes")

    async def plant_foreign(self, case: ConformanceCase) -> Callable[[], Awaitable[object]] | None:
        """Put an object the plugin does not own where ``case`` would publish.

        Return a coroutine function reading that object's full current state; the
        kit compares it before and after a sync, which must raise ConflictError.
        ``None`` (the default) skips the test.
        """
        return None

    async def assert_retained(self, case: ConformanceCase, material: CertificateMaterial) -> None:
        """After ``retract(delete=False)``: by default, ``observe`` still sees ``material``.

        Override when retaining drops the ownership marks ``observe`` relies on.
        """
        observation = await case.observe()
        assert observation.fingerprint == material.fingerprint, (
            f"retract(delete=False) should keep what was published; observe says {observation!r}"
        )

    # ------------------------------------------------------------------ fixtures
    @pytest_asyncio.fixture(loop_scope="session")
    async def plugin_context(self, kube_api: client.ApiClient) -> AsyncIterator[PluginContext]:
        """The context the factory gets: the core's real watches over the test cluster."""
        async with live_plugin_context(KubeClient(kube_api)) as context:
            yield context

    @pytest.fixture
    def binding(self, namespace: str) -> BindingRef:
        """The binding whose destination entry the tests drive."""
        return BindingRef(
            namespace=namespace, name="conformance", uid=str(uuid.uuid4()), destination="under-test"
        )

    @pytest_asyncio.fixture(loop_scope="session")
    async def conformance_case(
        self,
        request: pytest.FixtureRequest,
        destination_type: DestinationType,
        plugin_context: PluginContext,
        binding: BindingRef,
    ) -> AsyncIterator[ConformanceCase]:
        """A destination built by the type's factory, with a validated config."""
        manager = PluginManager()
        manager.register(_TypeUnderTest(destination_type), name="type-under-test")
        destination = destination_type.factory(plugin_context)
        certs = CertFactory(key_type=self.key_type)
        root = certs.root_ca()
        async with AsyncExitStack() as cleanup:
            case = ConformanceCase(
                request=request,
                destination_type=destination_type,
                destination=destination,
                context=plugin_context,
                manager=manager,
                binding=binding,
                certs=certs,
                root=root,
                issuer=certs.intermediate_ca(root),
                with_ca_bundle=self.with_ca_bundle,
                settle_timeout=self.settle_timeout,
                cleanup=cleanup,
            )
            try:
                case.raw_config = dict(await self.make_config(case))
                case.config = manager.validate_config(destination_type.name, case.raw_config)
                yield case
            finally:
                await destination.aclose()

    # ------------------------------------------------------------------ parametrization
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        cls = metafunc.cls
        if cls is None or not issubclass(cls, DestinationConformance):
            return
        if "bad_config" in metafunc.fixturenames:
            metafunc.parametrize(
                "bad_config", list(cls.bad_configs.values()), ids=list(cls.bad_configs)
            )
        if "unsupported_material" in metafunc.fixturenames:
            metafunc.parametrize(
                "unsupported_material",
                list(cls.unsupported_materials.values()),
                ids=list(cls.unsupported_materials),
            )
        if "supported_key_type" in metafunc.fixturenames:
            metafunc.parametrize(
                "supported_key_type",
                list(cls.supported_key_types),
                ids=[str(key_type) for key_type in cls.supported_key_types],
            )

    # ------------------------------------------------------------------ the tests
    def test_type_is_installed_through_its_entry_point(
        self, destination_type: DestinationType
    ) -> None:
        if not self.installed_by_entry_point:
            pytest.skip("installed_by_entry_point is False")
        manager = PluginManager()
        manager.load_entry_points()
        assert destination_type.name in manager.destination_types(), (
            f"no installed plugin provides {destination_type.name!r}; failures: "
            f"{[failure.error for failure in manager.failures]}"
        )
        installed = manager.destination_type(destination_type.name).destination_type
        assert installed.config_model is destination_type.config_model
        assert installed.api_version == destination_type.api_version

    def test_bad_config_is_refused_naming_the_field(
        self, destination_type: DestinationType, bad_config: BadConfig
    ) -> None:
        manager = PluginManager()
        manager.register(_TypeUnderTest(destination_type), name="type-under-test")
        with pytest.raises(ConfigError) as refused:
            manager.validate_config(destination_type.name, bad_config.config)
        assert bad_config.field in refused.value.message, (
            f"the message should name {bad_config.field!r}: {refused.value.message}"
        )

    @_session_loop
    async def test_first_sync_publishes_and_is_observed(
        self, conformance_case: ConformanceCase
    ) -> None:
        case = conformance_case
        material = case.new_material()
        before = await case.observe()
        assert before.fingerprint is None, f"a fresh destination should hold nothing: {before!r}"

        writes = await self.count_writes(case)
        result = await case.sync(material)
        counted = await self.count_writes(case) - writes

        assert result is not None, "the first sync must publish"
        assert result.writes >= 1, f"publish reported {result.writes} writes"
        assert counted >= 1, "the destination received no write"
        if self.exact_write_count:
            assert result.writes == counted, f"publish reported {result.writes}, made {counted}"
        after = await case.observe()
        assert after.fingerprint == material.fingerprint, after
        assert not needs_publish(after, material), f"observe disagrees with publish: {after!r}"
        if after.external_id is not None and result.external_id is not None:
            assert after.external_id == result.external_id

    @_session_loop
    async def test_second_sync_makes_no_writes(self, conformance_case: ConformanceCase) -> None:
        case = conformance_case
        material = case.new_material()
        assert await case.sync(material) is not None

        writes = await self.count_writes(case)
        observation = await case.observe()
        second = await case.sync(material)
        third = await case.sync(material)
        made = await self.count_writes(case) - writes

        assert observation.fingerprint == material.fingerprint
        assert second is None, "an unchanged certificate was published again"
        assert third is None, "an unchanged certificate was published again"
        assert made == 0, f"a steady state made {made} writes"

    @_session_loop
    async def test_renewal_is_published_and_observed(
        self, conformance_case: ConformanceCase
    ) -> None:
        case = conformance_case
        first = case.new_material()
        published = await case.sync(first)
        assert published is not None
        renewed = case.new_material()
        assert renewed.fingerprint != first.fingerprint

        result = await case.sync(renewed)

        assert result is not None, "a renewed certificate must be published"
        observation = await case.observe()
        assert observation.fingerprint == renewed.fingerprint, observation
        if self.stable_external_id:
            assert result.external_id == published.external_id, "a renewal moved the object"
        writes = await self.count_writes(case)
        assert await case.sync(renewed) is None
        assert await self.count_writes(case) == writes

    @_session_loop
    async def test_drift_is_detected_and_repaired(self, conformance_case: ConformanceCase) -> None:
        case = conformance_case
        material = case.new_material()
        assert await case.sync(material) is not None

        await self.tamper(case)
        drifted = await case.wait_for_observation(
            lambda observation: needs_publish(observation, material), "the tampering"
        )
        assert drifted.fingerprint is None or drifted.content_hash is not None, drifted

        repaired = await case.sync(material)
        assert repaired is not None, "the sync after drift must publish"
        observation = await case.observe()
        assert not needs_publish(observation, material), observation
        writes = await self.count_writes(case)
        assert await case.sync(material) is None, "the repair did not reach a steady state"
        assert await self.count_writes(case) == writes

    @_session_loop
    async def test_lost_status_creates_no_duplicate(
        self, conformance_case: ConformanceCase
    ) -> None:
        case = conformance_case
        material = case.new_material()
        first = await case.sync(material)
        assert first is not None

        case.forget_status()
        writes = await self.count_writes(case)
        assert await case.sync(material) is None, "with status lost, observe lost track"
        assert await self.count_writes(case) == writes

        case.forget_status()
        renewed = await case.sync(case.new_material())
        assert renewed is not None
        if self.stable_external_id:
            assert renewed.external_id == first.external_id, "lost status made a duplicate"

    @_session_loop
    async def test_retract_delete_removes(self, conformance_case: ConformanceCase) -> None:
        case = conformance_case
        material = case.new_material()
        assert await case.sync(material) is not None

        result = await case.retract(delete=True)

        assert result.removed is True
        await case.wait_for_observation(
            lambda observation: observation.fingerprint is None, "nothing of ours"
        )
        again = await case.retract(delete=True)
        assert again.removed is True, "a second retract must succeed too"

    @_session_loop
    async def test_retract_of_a_removed_entry_needs_no_config(
        self, conformance_case: ConformanceCase
    ) -> None:
        case = conformance_case
        material = case.new_material()
        assert await case.sync(material) is not None
        removed_entry = Target(binding=case.binding, config=None, previous=case.previous)

        result = await case.retract(delete=True, target=removed_entry)

        assert result.removed is True
        await case.wait_for_observation(
            lambda observation: observation.fingerprint is None, "nothing of ours"
        )

    @_session_loop
    async def test_retract_retain_keeps(self, conformance_case: ConformanceCase) -> None:
        case = conformance_case
        material = case.new_material()
        assert await case.sync(material) is not None

        result = await case.retract(delete=False)
        again = await case.retract(delete=False)

        assert result.removed is False
        assert again.removed is False
        await self.assert_retained(case, material)

    @_session_loop
    async def test_supported_material_is_published(
        self, conformance_case: ConformanceCase, supported_key_type: KeyType
    ) -> None:
        case = conformance_case
        material = case.new_material(key_type=supported_key_type)

        result = await case.sync(material)

        assert result is not None
        assert (await case.observe()).fingerprint == material.fingerprint

    @_session_loop
    async def test_unsupported_material_is_refused(
        self, conformance_case: ConformanceCase, unsupported_material: MaterialRecipe
    ) -> None:
        case = conformance_case
        material = case.track(unsupported_material(case.certs, case.issuer))
        writes = await self.count_writes(case)

        with pytest.raises(DestinationError) as refused:
            await case.call(
                "check_material", case.destination.check_material(material, case.target)
            )

        assert isinstance(refused.value, PermanentError), (
            f"check_material must raise a PermanentError, not {type(refused.value).__name__}"
        )
        assert await self.count_writes(case) == writes

    @_session_loop
    async def test_foreign_object_is_a_conflict_left_untouched(
        self, conformance_case: ConformanceCase
    ) -> None:
        case = conformance_case
        read = await self.plant_foreign(case)
        if read is None:
            pytest.skip("plant_foreign is not implemented for this type")
        before = await read()

        with pytest.raises(ConflictError) as conflict:
            await case.sync(case.new_material())

        assert await read() == before, "the foreign object was changed"
        assert conflict.value.message
