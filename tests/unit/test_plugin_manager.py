"""The plugin manager against real entry points, as a user's installation would present them.

Each test builds throwaway distributions (a module and a ``*.dist-info`` with
``METADATA`` and ``entry_points.txt``) in a temporary directory and puts that
directory on ``sys.path``: ``importlib.metadata`` then finds them exactly as it
finds pip-installed plugins, so discovery, import and registration are the
real code paths, not mocks.
"""

from __future__ import annotations

import importlib
import logging
import sys
import textwrap
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel

from certauto_core.plugins.contract import (
    HOOK_API_VERSION,
    Destination,
    DestinationType,
    PluginContext,
)
from certauto_core.plugins.errors import ConfigError, PermanentError
from certauto_core.plugins.hookspecs import hookimpl
from certauto_core.plugins.listing import format_plugin_table
from certauto_core.plugins.manager import (
    BLOCK_PLUGINS_ENV,
    DuplicateDestinationType,
    PluginManager,
    PluginRegistrationError,
    UnknownDestinationType,
)

GOOD_PLUGIN = """
from pydantic import BaseModel, Field, SecretStr

from certauto_core.plugins.contract import DestinationType
from certauto_core.plugins.hookspecs import hookimpl


class Config(BaseModel):
    region: str = Field(pattern=r"^[a-z]{{2}}-[a-z]+-[0-9]$")
    api_token: SecretStr
    retries: int = 3


def factory(context):
    raise NotImplementedError


@hookimpl
def certauto_destination_types():
    return [
        DestinationType(
            name=name,
            config_model=Config,
            factory=factory,
            description="Fixture destination {{}}".format(name),
            api_version=api_version,
        )
        for name, api_version in {records!r}
    ]
"""


@dataclass
class FakeSite:
    """A directory on ``sys.path`` holding hand-built distributions."""

    root: Path
    prefix: str
    """Prepended to module names so no two tests (or installed packages) share a module."""

    def module(self, name: str) -> str:
        return f"{self.prefix}_{name}"

    def add_distribution(
        self,
        dist_name: str,
        version: str,
        *,
        module: str,
        source: str,
        entry_point: str | None = None,
    ) -> str:
        """Write ``module`` and a dist-info declaring it as a plugin; return the module name."""
        module_name = self.module(module)
        (self.root / f"{module_name}.py").write_text(textwrap.dedent(source))
        dist_info = self.root / f"{dist_name.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n"
        )
        (dist_info / "entry_points.txt").write_text(
            f"[certauto.destinations]\n{entry_point or module} = {module_name}\n"
        )
        importlib.invalidate_caches()
        return module_name

    def add_good_plugin(
        self,
        dist_name: str,
        version: str,
        *,
        module: str,
        records: list[tuple[str, int]],
        entry_point: str | None = None,
    ) -> str:
        return self.add_distribution(
            dist_name,
            version,
            module=module,
            source=GOOD_PLUGIN.format(records=records),
            entry_point=entry_point,
        )


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSite]:
    root = tmp_path / "site-packages"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))  # also invalidates importlib's caches
    monkeypatch.delenv(BLOCK_PLUGINS_ENV, raising=False)
    fake = FakeSite(root=root, prefix=f"certauto_fixture_{uuid.uuid4().hex[:8]}")
    yield fake
    for name in [name for name in sys.modules if name.startswith(fake.prefix)]:
        del sys.modules[name]
    importlib.invalidate_caches()


def loaded(site: FakeSite) -> PluginManager:
    manager = PluginManager()
    manager.load_entry_points()
    return manager


def test_good_plugin_types_are_listed_with_distribution_and_version(site: FakeSite) -> None:
    site.add_good_plugin(
        "certauto-fixture-good",
        "1.2.3",
        module="good",
        entry_point="good-ep",
        records=[("fixture-good", 1), ("example.com/fixture-vault", 1)],
    )

    types = loaded(site).destination_types()

    for name in ("fixture-good", "example.com/fixture-vault"):
        registered = types[name]
        assert registered.distribution == "certauto-fixture-good"
        assert registered.version == "1.2.3"
        assert registered.entry_point == "good-ep"
        assert registered.destination_type.api_version == 1
        assert issubclass(registered.destination_type.config_model, BaseModel)


def test_plugin_that_raises_on_import_is_logged_and_skipped(
    site: FakeSite, caplog: pytest.LogCaptureFixture
) -> None:
    site.add_distribution(
        "certauto-fixture-broken",
        "0.0.1",
        module="broken",
        source="raise RuntimeError('cannot find libfoo.so')\n",
    )
    site.add_distribution(
        "certauto-fixture-quitter", "0.0.2", module="quitter", source="raise SystemExit(3)\n"
    )
    site.add_good_plugin(
        "certauto-fixture-fine", "2.0", module="fine", records=[("fixture-fine", 1)]
    )

    with caplog.at_level(logging.ERROR, logger="certauto_core.plugins.manager"):
        manager = loaded(site)

    assert "fixture-fine" in manager.destination_types()
    assert {f.origin.distribution: f.error for f in manager.failures}.get(
        "certauto-fixture-quitter"
    ) == "SystemExit: 3"
    [failure] = [f for f in manager.failures if f.origin.distribution == "certauto-fixture-broken"]
    assert failure.phase == "import"
    assert failure.origin.entry_point == "broken"
    assert failure.origin.version == "0.0.1"
    assert failure.error == "RuntimeError: cannot find libfoo.so"
    [record] = [r for r in caplog.records if "certauto-fixture-broken" in r.getMessage()]
    message = record.getMessage()
    assert "0.0.1" in message
    assert "'broken'" in message
    assert "cannot find libfoo.so" in message
    assert record.exc_info is not None  # the traceback is there for whoever debugs it


@pytest.mark.parametrize(
    "block",
    [
        "evil",  # the entry-point name
        "certauto-fixture-evil",  # the distribution name
        " other , Certauto_Fixture.EVIL ",  # normalised like pip names, blanks ignored
    ],
)
def test_block_env_var_blocks_before_import(
    site: FakeSite, monkeypatch: pytest.MonkeyPatch, block: str
) -> None:
    # The blocked plugin would fail on import: blocking must keep it from being imported.
    evil = site.add_distribution(
        "certauto-fixture-evil",
        "6.6.6",
        module="evil",
        entry_point="evil",
        source="raise SystemError('imported although blocked')\n",
    )
    site.add_good_plugin(
        "certauto-fixture-kept", "1.0", module="kept", records=[("fixture-kept", 1)]
    )
    monkeypatch.setenv(BLOCK_PLUGINS_ENV, block)

    manager = loaded(site)

    assert evil not in sys.modules
    assert [(o.entry_point, o.distribution, o.version) for o in manager.blocked] == [
        ("evil", "certauto-fixture-evil", "6.6.6")
    ]
    assert not [f for f in manager.failures if f.origin.distribution == "certauto-fixture-evil"]
    assert "fixture-kept" in manager.destination_types()


def test_two_plugins_registering_one_type_name_fail_naming_both(site: FakeSite) -> None:
    site.add_good_plugin("certauto-fixture-acm-a", "1.0.0", module="a", records=[("dup", 1)])
    site.add_good_plugin("certauto-fixture-acm-b", "2.5.0", module="b", records=[("dup", 1)])
    manager = loaded(site)

    with pytest.raises(DuplicateDestinationType) as raised:
        manager.destination_types()

    message = str(raised.value)
    assert "'dup'" in message
    assert "certauto-fixture-acm-a 1.0.0" in message
    assert "certauto-fixture-acm-b 2.5.0" in message
    assert BLOCK_PLUGINS_ENV in message  # and says how to get out of it
    assert [reg.distribution for reg in raised.value.duplicates["dup"]] == [
        "certauto-fixture-acm-a",
        "certauto-fixture-acm-b",
    ]
    # Lookups and config validation refuse too: no silent pick of either plugin.
    with pytest.raises(DuplicateDestinationType):
        manager.validate_config("dup", {"region": "eu-west-1", "api_token": "x"})


def test_record_with_newer_api_version_is_refused_alone(site: FakeSite) -> None:
    future = HOOK_API_VERSION + 1
    site.add_good_plugin(
        "certauto-fixture-future",
        "9.0",
        module="future",
        records=[("fixture-today", HOOK_API_VERSION), ("fixture-tomorrow", future)],
    )
    manager = loaded(site)

    types = manager.destination_types()

    assert "fixture-today" in types
    assert "fixture-tomorrow" not in types
    [failure] = [f for f in manager.failures if f.origin.distribution == "certauto-fixture-future"]
    assert failure.phase == "record"
    assert failure.type_name == "fixture-tomorrow"
    assert f"needs hook API version {future}" in failure.error
    assert f"implements version {HOOK_API_VERSION}" in failure.error
    # A binding that uses the refused type is told why, not just "unknown".
    with pytest.raises(UnknownDestinationType, match=r"refused: .*needs hook API version"):
        manager.destination_type("fixture-tomorrow")


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            "DestinationType(name='Bad_Name', config_model=Config, factory=factory)",
            "'Bad_Name' is invalid",
        ),
        (
            "DestinationType(name='trailing-newline\\n', config_model=Config, factory=factory)",
            "is invalid",
        ),
        (
            "DestinationType(name='fixture-dict', config_model=dict, factory=factory)",
            "config_model must be a pydantic BaseModel subclass",
        ),
        (
            "DestinationType(name='fixture-nofactory', config_model=Config, factory=None)",
            "factory must be callable",
        ),
        ("'fixture-just-a-string'", "returned a str, not a DestinationType"),
    ],
)
def test_records_that_break_the_contract_are_refused(
    site: FakeSite, record: str, expected: str
) -> None:
    site.add_distribution(
        "certauto-fixture-sloppy",
        "0.1",
        module="sloppy",
        source=f"""
        from pydantic import BaseModel

        from certauto_core.plugins.contract import DestinationType
        from certauto_core.plugins.hookspecs import hookimpl

        class Config(BaseModel):
            pass

        def factory(context):
            raise NotImplementedError

        @hookimpl
        def certauto_destination_types():
            return [{record}]
        """,
    )
    manager = loaded(site)

    # Nothing of the sloppy plugin's got through (installed real plugins may be listed).
    assert [
        r
        for r in manager.destination_types().values()
        if r.distribution == "certauto-fixture-sloppy"
    ] == []
    [failure] = [f for f in manager.failures if f.origin.distribution == "certauto-fixture-sloppy"]
    assert failure.phase == "record"
    assert expected in failure.error


def test_hook_that_raises_marks_only_its_plugin_failed(site: FakeSite) -> None:
    site.add_distribution(
        "certauto-fixture-crashy",
        "0.2",
        module="crashy",
        source="""
        from certauto_core.plugins.hookspecs import hookimpl

        @hookimpl
        def certauto_destination_types():
            raise KeyError("AZURE_TENANT_ID")
        """,
    )
    site.add_good_plugin(
        "certauto-fixture-steady", "1.0", module="steady", records=[("fixture-steady", 1)]
    )
    manager = loaded(site)

    assert "fixture-steady" in manager.destination_types()
    [failure] = [f for f in manager.failures if f.origin.distribution == "certauto-fixture-crashy"]
    assert failure.phase == "hook"
    assert "KeyError" in failure.error


MISSPELLED_DECORATED = """
from certauto_core.plugins.hookspecs import hookimpl

@hookimpl
def certauto_destination_type():
    return []
"""

MISSPELLED_UNDECORATED = """
def certauto_destination_typez():
    return []
"""

UNDECORATED = """
def certauto_destination_types():
    return []
"""


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (MISSPELLED_DECORATED, "'certauto_destination_type' is not a hook of certauto-core"),
        (MISSPELLED_UNDECORATED, "not decorated with @hookimpl either"),
        (UNDECORATED, "'certauto_destination_types' is not decorated with @hookimpl"),
    ],
)
def test_misspelled_or_undecorated_hook_fails_at_load(
    site: FakeSite, source: str, expected: str
) -> None:
    site.add_distribution("certauto-fixture-typo", "0.3", module="typo", source=source)
    site.add_good_plugin(
        "certauto-fixture-spelled", "1.0", module="spelled", records=[("fixture-spelled", 1)]
    )
    manager = loaded(site)

    [failure] = [f for f in manager.failures if f.origin.distribution == "certauto-fixture-typo"]
    assert failure.phase == "register"
    assert expected in failure.error
    if source is not UNDECORATED:
        assert "(did you mean 'certauto_destination_types'?)" in failure.error
    assert "certauto-fixture-typo" not in {p.distribution for p in manager.plugins}
    assert "fixture-spelled" in manager.destination_types()


def test_in_process_register_raises_on_misspelled_hook() -> None:
    class Typo:
        @hookimpl
        def certauto_destination_typs(self) -> list[DestinationType]:
            return []

    manager = PluginManager()
    with pytest.raises(PluginRegistrationError, match="did you mean 'certauto_destination_types'"):
        manager.register(Typo(), name="typo")
    assert manager.plugins == ()


def test_hook_argument_this_core_does_not_pass_is_refused() -> None:
    class WantsMore:
        @hookimpl
        def certauto_destination_types(self, cluster_name: str) -> list[DestinationType]:
            return []

    manager = PluginManager()
    with pytest.raises(PluginRegistrationError, match=r"cluster_name.*may need a newer one"):
        manager.register(WantsMore(), name="wants-more")
    assert manager.plugins == ()


def test_hook_from_a_newer_core_marked_optional_is_accepted() -> None:
    class FromTheFuture:
        @hookimpl(optionalhook=True)
        def certauto_hook_of_tomorrow(self) -> None:
            return None

    manager = PluginManager()
    manager.register(FromTheFuture(), name="future")
    assert [p.plugin_name for p in manager.plugins] == ["future"]


def test_hook_wrappers_are_refused() -> None:
    class Meddler:
        @hookimpl(wrapper=True)
        def certauto_destination_types(self) -> Iterator[None]:
            return (yield)

    manager = PluginManager()
    with pytest.raises(PluginRegistrationError, match="wrappers are not part of the"):
        manager.register(Meddler(), name="meddler")


class SecretConfig(BaseModel):
    region: str
    api_token: str
    retries: int = 3
    tags: dict[str, int] = {}


class SecretPlugin:
    @hookimpl
    def certauto_destination_types(self) -> list[DestinationType]:
        return [
            DestinationType(name="fixture-secret", config_model=SecretConfig, factory=_no_factory),
            DestinationType(name="fixture-other", config_model=SecretConfig, factory=_no_factory),
        ]


def _no_factory(context: PluginContext) -> Destination:
    raise NotImplementedError


def test_validate_config_returns_the_plugins_model() -> None:
    manager = PluginManager()
    manager.register(SecretPlugin(), name="secret")

    config = manager.validate_config(
        "fixture-secret", {"region": "eu-west-1", "api_token": "t", "retries": 5}
    )

    assert isinstance(config, SecretConfig)
    assert config.retries == 5


def test_validate_config_names_fields_and_never_echoes_values() -> None:
    manager = PluginManager()
    manager.register(SecretPlugin(), name="secret")
    secret = "hunter2-SUPER-SECRET"

    with pytest.raises(ConfigError) as raised:
        manager.validate_config(
            "fixture-secret",
            {"api_token": 12345, "retries": secret, "tags": {"env": secret}},
        )

    message = str(raised.value)
    assert message.splitlines() == [
        "config for destination type 'fixture-secret' is invalid (4 errors):",
        "config.region: Field required",
        "config.api_token: Input should be a valid string",
        "config.retries: Input should be a valid integer, unable to parse string as an integer",
        "config.tags.env: Input should be a valid integer, unable to parse string as an integer",
    ]
    assert isinstance(raised.value, PermanentError)
    # Nor through a logged traceback: the pydantic error (whose str() has the input) is not chained.
    rendered = "".join(traceback.format_exception(raised.value))
    assert secret not in rendered
    assert "12345" not in rendered
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None


def test_validate_config_rejects_a_non_mapping() -> None:
    manager = PluginManager()
    manager.register(SecretPlugin(), name="secret")

    with pytest.raises(ConfigError, match="must be a mapping, not list"):
        manager.validate_config("fixture-secret", ["hunter2"])  # type: ignore[arg-type]


def test_unknown_type_lists_known_types() -> None:
    manager = PluginManager()
    manager.register(SecretPlugin(), name="secret")

    with pytest.raises(UnknownDestinationType) as raised:
        manager.validate_config("fixture-secrte", {})

    assert isinstance(raised.value, PermanentError)
    assert raised.value.known == ("fixture-other", "fixture-secret")
    message = str(raised.value)
    assert "unknown destination type 'fixture-secrte'" in message
    assert "did you mean 'fixture-secret'?" in message
    assert "known types: fixture-other, fixture-secret" in message


def test_listing_shows_types_failures_and_blocked(
    site: FakeSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.add_good_plugin(
        "certauto-fixture-listed",
        "3.1.4",
        module="listed",
        entry_point="listed",
        records=[("fixture-listed", 1)],
    )
    site.add_distribution(
        "certauto-fixture-broken", "0.0.1", module="broken", source="import no_such_module\n"
    )
    site.add_distribution(
        "certauto-fixture-blocked", "7.0", module="blocked", source="raise SystemExit(1)\n"
    )
    monkeypatch.setenv(BLOCK_PLUGINS_ENV, "certauto-fixture-blocked")
    manager = loaded(site)

    lines = format_plugin_table(manager).splitlines()

    def row(*cells: str) -> bool:
        return any(line.split()[: len(cells)] == list(cells) for line in lines)

    assert f"hook API version {HOOK_API_VERSION}" in lines[0]
    assert row("TYPE", "DISTRIBUTION", "VERSION", "API", "DESCRIPTION")
    assert row("fixture-listed", "certauto-fixture-listed", "3.1.4", "1", "Fixture", "destination")
    assert row("broken", "certauto-fixture-broken", "0.0.1", "import", "ModuleNotFoundError:")
    assert row("blocked", "certauto-fixture-blocked", "7.0")
    assert any(line.startswith("BLOCKED") for line in lines)
    assert any(line.startswith("FAILED") for line in lines)


def test_listing_shows_duplicates_instead_of_raising(site: FakeSite) -> None:
    site.add_good_plugin("certauto-fixture-one", "1.0", module="one", records=[("twin", 1)])
    site.add_good_plugin("certauto-fixture-two", "2.0", module="two", records=[("twin", 1)])

    text = format_plugin_table(loaded(site))

    assert "refuse to start" in text
    assert "certauto-fixture-one 1.0" in text
    assert "certauto-fixture-two 2.0" in text
