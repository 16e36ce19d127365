"""Load destination plugins and give the core a typed view of what they provide.

pluggy's hook relay is untyped (``pm.hook.certauto_destination_types()`` is a
list of ``Any``) and cannot say which plugin returned which result. The core
needs both: typed records to act on, and the distribution behind every record
so that a bad or clashing plugin can be named in logs, in
``certauto plugins`` and in the error that stops the operator. So the rest of
the core talks to :class:`PluginManager`, one typed method per hook, and
never to pluggy directly.

Loading is forgiving, collection is strict:

* A plugin that fails to import or to register (for example a misspelled hook
  name) is logged with its entry point, distribution and version, recorded in
  :attr:`PluginManager.failures` and skipped. One broken third-party package
  must not take down the destinations that work.
* A record that breaks the contract (bad name, newer ``api_version``, config
  model that is not a pydantic model) is refused the same way, alone.
* Two records claiming one type name stop everything with
  :class:`DuplicateDestinationType`: choosing one silently could send a
  certificate through code the user did not mean to run.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from types import MappingProxyType
from typing import Any, Final, Literal

import pluggy
from pydantic import BaseModel, ValidationError

import certauto_core
from certauto_core.plugins import hookspecs
from certauto_core.plugins.contract import HOOK_API_VERSION, DestinationType
from certauto_core.plugins.errors import ConfigError, PermanentError

logger = logging.getLogger(__name__)

BLOCK_PLUGINS_ENV: Final = "CERTAUTO_BLOCK_PLUGINS"
"""Comma-separated entry-point and/or distribution names that are never imported."""

TYPE_NAME_PATTERN: Final = re.compile(
    r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(/[a-z0-9]([a-z0-9.-]*[a-z0-9])?)?"
)
"""What a destination type name may look like (matched in full).

Lower-case DNS-ish words so the name is safe in labels, metrics and logs, with
an optional vendor prefix (``example.com/vault``) so third parties need not
fight over short names.
"""

MAX_CONFIG_ERRORS: Final = 20
"""How many pydantic errors a :class:`ConfigError` lists before summarising the rest."""

FailurePhase = Literal["import", "register", "hook", "record"]
"""Where a plugin failed: importing its entry point, registering it with pluggy,
calling its hook, or checking one record the hook returned."""


def normalize_name(name: str) -> str:
    """PEP 503 normalisation, so ``Certauto_AWS.acm`` blocks ``certauto-aws-acm``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_block_list(value: str) -> frozenset[str]:
    """Parse :data:`BLOCK_PLUGINS_ENV`'s value into normalised names; blanks are ignored."""
    return frozenset(normalize_name(part.strip()) for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class PluginOrigin:
    """Where a plugin came from, so that every message about it can name it."""

    plugin_name: str
    """The name pluggy knows the plugin by (unique within a manager)."""
    entry_point: str | None = None
    """The entry-point name, or ``None`` for a plugin registered in-process."""
    distribution: str | None = None
    """The installed distribution (``pip`` name) providing the plugin, if known."""
    version: str | None = None
    """That distribution's version, if known."""

    def describe(self) -> str:
        """A short human phrase: ``certauto-aws-acm 0.1.0 (entry point 'aws-acm')``."""
        if self.distribution is not None:
            where = f"{self.distribution} {self.version or '(unknown version)'}"
            if self.entry_point is not None:
                return f"{where} (entry point {self.entry_point!r})"
            return f"{where} (plugin {self.plugin_name!r})"
        if self.entry_point is not None:
            return f"entry point {self.entry_point!r} (unknown distribution)"
        return f"in-process plugin {self.plugin_name!r}"


@dataclass(frozen=True)
class RegisteredType:
    """A checked :class:`DestinationType` and the plugin that registered it."""

    destination_type: DestinationType
    origin: PluginOrigin

    @property
    def name(self) -> str:
        """The type name users write in ``spec.destinations[].type``."""
        return self.destination_type.name

    @property
    def distribution(self) -> str | None:
        """The distribution that provides the type (``None`` for in-process plugins)."""
        return self.origin.distribution

    @property
    def version(self) -> str | None:
        """The providing distribution's version."""
        return self.origin.version

    @property
    def entry_point(self) -> str | None:
        """The entry-point name the plugin was loaded through."""
        return self.origin.entry_point


@dataclass(frozen=True)
class PluginFailure:
    """A plugin, or one of its records, that was skipped, and why."""

    origin: PluginOrigin
    phase: FailurePhase
    error: str
    """One line, suitable for logs and ``certauto plugins``; never contains config values."""
    type_name: str | None = None
    """For a refused record, the type name it claimed (when it had a readable one)."""


class PluginError(Exception):
    """A problem with the set of installed plugins rather than with one destination."""


class PluginRegistrationError(PluginError):
    """A plugin object could not be registered; :meth:`PluginManager.register` raises it."""

    def __init__(self, origin: PluginOrigin, reason: str) -> None:
        super().__init__(f"{origin.describe()}: {reason}")
        self.origin = origin
        self.reason = reason


class DuplicateDestinationType(PluginError):  # noqa: N818 - named for what happened
    """Two or more records claim one type name; the operator must not start.

    ``duplicates`` maps each clashing name to every registration of it.
    """

    def __init__(self, duplicates: Mapping[str, Sequence[RegisteredType]]) -> None:
        lines = [
            f"destination type {name!r} is registered more than once: by "
            + _join_and([reg.origin.describe() for reg in regs])
            + f"; uninstall all but one, or block the others with {BLOCK_PLUGINS_ENV}"
            for name, regs in sorted(duplicates.items())
        ]
        super().__init__("\n".join(lines))
        self.duplicates = {name: tuple(regs) for name, regs in duplicates.items()}


class UnknownDestinationType(PermanentError):  # noqa: N818 - named for what happened
    """A binding asks for a type no loaded plugin provides.

    It is a :class:`PermanentError`: the destination goes to ``Failed`` and the
    message (which lists the known types, and the refused, failed and blocked
    plugins that may explain the gap) lands in its status.
    """

    def __init__(self, type_name: str, message: str, known: Sequence[str]) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.known = tuple(known)


@dataclass(frozen=True)
class _Collection:
    """One run of ``certauto_destination_types`` over every plugin, checked."""

    registrations: tuple[RegisteredType, ...]
    failures: tuple[PluginFailure, ...]
    by_name: Mapping[str, RegisteredType]
    duplicates: Mapping[str, tuple[RegisteredType, ...]]


class PluginManager:
    """The core's only way in to plugins: loads them and calls their hooks, typed.

    Built-in destinations are distributions in the same entry-point group, so
    they go through exactly the path third-party ones do.
    """

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._origins: dict[str, PluginOrigin] = {}
        self._load_failures: list[PluginFailure] = []
        self._blocked: list[PluginOrigin] = []
        self._seen_entry_points: set[tuple[str | None, str]] = set()
        self._collection: _Collection | None = None

    # -- loading ---------------------------------------------------------------

    def load_entry_points(self) -> None:
        """Import and register every plugin in :data:`~.hookspecs.ENTRY_POINT_GROUP`.

        Plugins named in :data:`BLOCK_PLUGINS_ENV` (by entry-point or
        distribution name) are recorded in :attr:`blocked` without being
        imported, so a plugin that crashes at import can be switched off
        without uninstalling it. Import and registration errors are logged and
        recorded in :attr:`failures`; they never propagate. Calling this again
        loads only entry points not seen before.
        """
        blocked = parse_block_list(os.environ.get(BLOCK_PLUGINS_ENV, ""))
        for entry_point in _entry_points():
            dist = entry_point.dist
            distribution = dist.name if dist is not None else None
            seen_key = (distribution, entry_point.name)
            if seen_key in self._seen_entry_points:
                continue
            self._seen_entry_points.add(seen_key)
            # Two distributions may use one entry-point name; pluggy needs unique names.
            plugin_name = f"{distribution}:{entry_point.name}" if distribution else entry_point.name
            origin = PluginOrigin(
                plugin_name=plugin_name,
                entry_point=entry_point.name,
                distribution=distribution,
                version=dist.version if dist is not None else None,
            )
            if _is_blocked(origin, blocked):
                self._blocked.append(origin)
                logger.info(
                    "plugin %s not loaded: blocked by %s",
                    origin.describe(),
                    BLOCK_PLUGINS_ENV,
                    extra=_log_fields(origin),
                )
                continue
            try:
                plugin = entry_point.load()
            # SystemExit too: a third-party package calling sys.exit() at import
            # must not stop the operator. KeyboardInterrupt still propagates.
            except (Exception, SystemExit) as exc:
                self._record_load_failure(origin, "import", _exception_text(exc), exc)
                continue
            try:
                self._register(plugin, origin)
            except PluginRegistrationError as exc:
                self._record_load_failure(origin, "register", exc.reason, None)

    def register(
        self,
        plugin: object,
        *,
        name: str,
        distribution: str | None = None,
        version: str | None = None,
    ) -> None:
        """Register a plugin object in-process (tests, embedding); raise if it is invalid.

        Unlike :meth:`load_entry_points` this raises
        :class:`PluginRegistrationError` instead of skipping, because the caller
        wrote the code and wants to know at once. :data:`BLOCK_PLUGINS_ENV`
        does not apply: blocking is for code that arrives by installation.
        """
        origin = PluginOrigin(
            plugin_name=name, entry_point=None, distribution=distribution, version=version
        )
        self._register(plugin, origin)

    def _register(self, plugin: object, origin: PluginOrigin) -> None:
        if plugin is None:
            # pluggy silently ignores None; an entry point resolving to None is a bug.
            raise PluginRegistrationError(origin, "the plugin object is None")
        if origin.plugin_name in self._origins:
            raise PluginRegistrationError(
                origin,
                f"a plugin named {origin.plugin_name!r} is already registered "
                f"({self._origins[origin.plugin_name].describe()})",
            )
        unmarked = self._unmarked_hook_like_names(plugin)
        if unmarked:
            raise PluginRegistrationError(origin, "; ".join(unmarked))
        try:
            self._pm.register(plugin, name=origin.plugin_name)
        except pluggy.PluginValidationError as exc:
            # Typically an implementation declaring an argument this core does not
            # pass: arguments are only ever added, so it was written for a newer core.
            raise PluginRegistrationError(
                origin,
                f"{_one_line(str(exc))} (this certauto-core implements hook API version "
                f"{HOOK_API_VERSION}; the plugin may need a newer one)",
            ) from None
        except ValueError:
            other = self._pm.get_name(plugin)
            other_origin = self._origins.get(other) if other is not None else None
            where = other_origin.describe() if other_origin else repr(other)
            raise PluginRegistrationError(
                origin, f"the same plugin object is already registered as {where}"
            ) from None
        problems = self._unknown_hook_problems(plugin) + self._wrapper_problems(plugin)
        if problems:
            self._pm.unregister(plugin)
            raise PluginRegistrationError(origin, "; ".join(problems))
        self._origins[origin.plugin_name] = origin
        self._collection = None
        if not self._pm.get_hookcallers(plugin):
            logger.warning(
                "plugin %s implements no certauto hook; is its entry point right?",
                origin.describe(),
                extra=_log_fields(origin),
            )

    def _hook_names(self) -> list[str]:
        """The hooks this core specifies (the names ``check_pending`` accepts)."""
        return sorted(
            name
            for name, caller in vars(self._pm.hook).items()
            if not name.startswith("_") and isinstance(caller, pluggy.HookCaller)
            if caller.has_spec()
        )

    def _not_a_hook(self, name: str) -> str:
        """Explain that ``name`` matches no hook, suggesting the closest one."""
        hooks = self._hook_names()
        close = difflib.get_close_matches(name, hooks, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (
            f"{name!r} is not a hook of certauto-core {certauto_core.__version__}{hint}; "
            f"its hooks (API version {HOOK_API_VERSION}) are: {', '.join(hooks)}"
        )

    def _unmarked_hook_like_names(self, plugin: object) -> list[str]:
        """Catch ``certauto_*`` functions without ``@hookimpl``, which pluggy would ignore."""
        problems = []
        for attr in sorted(dir(plugin)):
            if not attr.startswith(hookspecs.HOOK_PREFIX):
                continue
            try:
                value = inspect.getattr_static(plugin, attr)
            except AttributeError:
                continue
            if isinstance(value, staticmethod | classmethod):
                value = value.__func__
            if not (inspect.isfunction(value) or inspect.ismethod(value)):
                continue
            if self._pm.parse_hookimpl_opts(plugin, attr) is not None:
                continue
            if attr in self._hook_names():
                problems.append(
                    f"{attr!r} is not decorated with @hookimpl "
                    "(from certauto_core.plugins.hookspecs), so it would never be called"
                )
            else:
                problems.append(
                    f"{self._not_a_hook(attr)}; it is not decorated with @hookimpl either"
                )
        return problems

    def _unknown_hook_problems(self, plugin: object) -> list[str]:
        """Use pluggy's ``check_pending`` to refuse implementations of hooks that do not exist.

        Plugins are registered one at a time and each one is checked before the
        next, so a pending hook found here belongs to ``plugin``.
        """
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            unknown = sorted(
                caller.name
                for caller in self._pm.get_hookcallers(plugin) or []
                if not caller.has_spec()
                and any(
                    impl.plugin is plugin and not impl.optionalhook
                    for impl in caller.get_hookimpls()
                )
            )
            if not unknown:  # pragma: no cover - only if someone bypassed this facade
                return [_one_line(str(exc))]
            return [
                f"{self._not_a_hook(name)}; mark an implementation of a hook from a "
                "newer core @hookimpl(optionalhook=True) to load it on older ones"
                for name in unknown
            ]
        return []

    def _wrapper_problems(self, plugin: object) -> list[str]:
        return [
            f"{caller.name!r} is a hook wrapper; wrappers are not part of the CertAuto contract"
            for caller in self._pm.get_hookcallers(plugin) or []
            for impl in caller.get_hookimpls()
            if impl.plugin is plugin and (impl.wrapper or impl.hookwrapper)
        ]

    def _record_load_failure(
        self,
        origin: PluginOrigin,
        phase: FailurePhase,
        error: str,
        exc: BaseException | None,
    ) -> None:
        self._load_failures.append(PluginFailure(origin=origin, phase=phase, error=error))
        logger.error(
            "plugin %s skipped (%s failed): %s",
            origin.describe(),
            phase,
            error,
            exc_info=exc,
            extra=_log_fields(origin),
        )

    # -- what was loaded -------------------------------------------------------

    @property
    def plugins(self) -> Sequence[PluginOrigin]:
        """Every registered plugin, in registration order."""
        return tuple(self._origins.values())

    @property
    def blocked(self) -> Sequence[PluginOrigin]:
        """Entry points skipped because :data:`BLOCK_PLUGINS_ENV` names them."""
        return tuple(self._blocked)

    @property
    def failures(self) -> Sequence[PluginFailure]:
        """Every plugin or record that was skipped, with the reason.

        Includes hook and record failures, so reading it calls the hooks once
        if :meth:`destination_types` has not yet.
        """
        return tuple(self._load_failures) + self._collect().failures

    # -- hooks -----------------------------------------------------------------

    def registrations(self) -> Sequence[RegisteredType]:
        """Every accepted record, sorted by name, duplicates included.

        For diagnostics (``certauto plugins`` must be able to show a clash);
        the core itself uses :meth:`destination_types`.
        """
        return self._collect().registrations

    def destination_types(self) -> Mapping[str, RegisteredType]:
        """Every destination type by name; raise :class:`DuplicateDestinationType` on a clash.

        Calls ``certauto_destination_types`` on each plugin once per manager
        (the result is cached until another plugin is registered).
        """
        collection = self._collect()
        if collection.duplicates:
            raise DuplicateDestinationType(collection.duplicates)
        return collection.by_name

    def destination_type(self, type_name: str) -> RegisteredType:
        """The registration of ``type_name``, or :class:`UnknownDestinationType`."""
        types = self.destination_types()
        registered = types.get(type_name)
        if registered is None:
            raise self._unknown(type_name, types)
        return registered

    def validate_config(self, type_name: str, raw: Mapping[str, Any]) -> BaseModel:
        """Validate a destination's ``config`` against its type's model.

        Raises :class:`~certauto_core.plugins.errors.ConfigError` with one line
        per problem naming the field (``config.region: Field required``). The
        message never contains input values, which may be credentials, and the
        pydantic error is not chained: its ``str()`` would print them in any
        traceback.
        """
        model = self.destination_type(type_name).destination_type.config_model
        if not isinstance(raw, Mapping):
            raise ConfigError(
                f"config for destination type {type_name!r} must be a mapping, "
                f"not {type(raw).__name__}"
            )
        problems: list[str]
        try:
            return model.model_validate(dict(raw))
        except ValidationError as exc:
            problems = _describe_validation_errors(exc)
        except Exception as exc:  # a crashing validator in the plugin's model
            problems = [f"config: the plugin's config model raised {type(exc).__name__}"]
        # Raised outside the except block so the pydantic error is not even the
        # implicit __context__ of the ConfigError.
        count = f"{len(problems)} error" + ("" if len(problems) == 1 else "s")
        if len(problems) > MAX_CONFIG_ERRORS:
            extra = len(problems) - MAX_CONFIG_ERRORS
            problems = [*problems[:MAX_CONFIG_ERRORS], f"... and {extra} more"]
        raise ConfigError(
            f"config for destination type {type_name!r} is invalid ({count}):\n"
            + "\n".join(problems)
        )

    def _unknown(
        self, type_name: str, types: Mapping[str, RegisteredType]
    ) -> UnknownDestinationType:
        parts = [f"unknown destination type {type_name!r}"]
        refused = [f for f in self._collect().failures if f.type_name == type_name]
        if refused:
            parts.append(f"it was refused: {refused[0].error} ({refused[0].origin.describe()})")
        else:
            close = difflib.get_close_matches(type_name, list(types), n=1)
            if close:
                parts.append(f"did you mean {close[0]!r}?")
        parts.append(
            "known types: " + ", ".join(types) if types else "no destination types are installed"
        )
        failed = sorted({f.origin.describe() for f in self.failures if f.type_name is None})
        if failed:
            parts.append("plugins that failed to load: " + ", ".join(failed))
        if self._blocked:
            parts.append(
                f"blocked by {BLOCK_PLUGINS_ENV}: "
                + ", ".join(origin.describe() for origin in self._blocked)
            )
        return UnknownDestinationType(type_name, "; ".join(parts), list(types))

    def _collect(self) -> _Collection:
        if self._collection is None:
            self._collection = self._call_destination_types()
        return self._collection

    def _call_destination_types(self) -> _Collection:
        """Call each implementation on its own, so every record keeps its origin.

        This is what pluggy's relay does (positional arguments chosen by the
        implementation's own parameter names), minus wrappers, which
        registration refuses, plus attribution and isolation: one plugin
        raising does not hide the others' records.
        """
        hook_kwargs: dict[str, object] = {}
        accepted: list[RegisteredType] = []
        failures: list[PluginFailure] = []
        caller = self._pm.hook.certauto_destination_types
        for impl in caller.get_hookimpls():
            origin = self._origins[impl.plugin_name]
            function: Callable[..., object] = impl.function
            try:
                result = function(*(hook_kwargs[arg] for arg in impl.argnames))
            except Exception as exc:
                failures.append(
                    self._log_failure(
                        origin,
                        "hook",
                        f"certauto_destination_types() raised {_exception_text(exc)}",
                        exc=exc,
                    )
                )
                continue
            if isinstance(result, str | bytes | Mapping) or not isinstance(result, Iterable):
                failures.append(
                    self._log_failure(
                        origin,
                        "hook",
                        "certauto_destination_types() must return a sequence of "
                        f"DestinationType (an empty list if none), not {type(result).__name__}",
                    )
                )
                continue
            for record in result:
                problem = _check_record(record, origin)
                if problem is None:
                    accepted.append(RegisteredType(destination_type=record, origin=origin))
                else:
                    type_name = getattr(record, "name", None)
                    failures.append(
                        self._log_failure(
                            origin,
                            "record",
                            problem,
                            type_name=type_name if isinstance(type_name, str) else None,
                        )
                    )
        accepted.sort(key=lambda reg: (reg.name, reg.distribution or "", reg.origin.plugin_name))
        grouped: dict[str, list[RegisteredType]] = {}
        for reg in accepted:
            grouped.setdefault(reg.name, []).append(reg)
        return _Collection(
            registrations=tuple(accepted),
            failures=tuple(failures),
            by_name=MappingProxyType({name: regs[0] for name, regs in grouped.items()}),
            duplicates=MappingProxyType(
                {name: tuple(regs) for name, regs in grouped.items() if len(regs) > 1}
            ),
        )

    @staticmethod
    def _log_failure(
        origin: PluginOrigin,
        phase: FailurePhase,
        error: str,
        *,
        type_name: str | None = None,
        exc: BaseException | None = None,
    ) -> PluginFailure:
        logger.error(
            "plugin %s: %s",
            origin.describe(),
            error,
            exc_info=exc,
            extra=_log_fields(origin),
        )
        return PluginFailure(origin=origin, phase=phase, error=error, type_name=type_name)


def _check_record(record: object, origin: PluginOrigin) -> str | None:
    """Why ``record`` breaks the contract, or ``None`` when it is acceptable."""
    if not isinstance(record, DestinationType):
        return f"returned a {type(record).__name__}, not a DestinationType"
    # Plugins are not type-checked against us: read fields as ``object`` and
    # check them, rather than trusting the dataclass annotations.
    name: object = record.name
    if not isinstance(name, str) or not TYPE_NAME_PATTERN.fullmatch(name):
        return (
            f"destination type name {name!r} is invalid: use lower-case letters, digits, "
            "'.' and '-', starting and ending with a letter or digit, optionally behind "
            "one vendor prefix such as 'example.com/'"
        )
    version: object = record.api_version
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return f"destination type {name!r}: api_version must be a positive integer, not {version!r}"
    if version > HOOK_API_VERSION:
        provider = origin.distribution or "the plugin"
        return (
            f"destination type {name!r} needs hook API version {version}, but "
            f"certauto-core {certauto_core.__version__} implements version {HOOK_API_VERSION}; "
            f"upgrade certauto-core or install a release of {provider} written for "
            f"version {HOOK_API_VERSION}"
        )
    model: object = record.config_model
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return (
            f"destination type {name!r}: config_model must be a pydantic BaseModel "
            f"subclass, not {_describe_object(model)}"
        )
    factory: object = record.factory
    if not callable(factory):
        return (
            f"destination type {name!r}: factory must be callable, not {_describe_object(factory)}"
        )
    description: object = record.description
    if not isinstance(description, str):
        return f"destination type {name!r}: description must be a string"
    return None


def _describe_validation_errors(exc: ValidationError) -> list[str]:
    """One ``location: message`` line per error, built without the input values."""
    return [
        f"{_format_loc(error['loc'])}: {error['msg']}"
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def _format_loc(loc: Sequence[int | str]) -> str:
    """``('tags', 'env')`` → ``config.tags.env``; ``('items', 0)`` → ``config.items[0]``."""
    text = "config"
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            text += f".{part}"
        else:
            text += f"[{part!r}]"
    return text


def _entry_points() -> list[metadata.EntryPoint]:
    """The group's entry points in a stable order, so logs and failures are reproducible."""
    found = metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP)
    return sorted(
        found, key=lambda ep: (ep.dist.name if ep.dist is not None else "", ep.name, ep.value)
    )


def _is_blocked(origin: PluginOrigin, blocked: frozenset[str]) -> bool:
    names = (origin.entry_point, origin.distribution)
    return any(name is not None and normalize_name(name) in blocked for name in names)


def _log_fields(origin: PluginOrigin) -> dict[str, str | None]:
    return {
        "plugin": origin.entry_point or origin.plugin_name,
        "distribution": origin.distribution,
        "version": origin.version,
    }


def _exception_text(exc: BaseException) -> str:
    text = _one_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _describe_object(value: object) -> str:
    if isinstance(value, type):
        return f"class {value.__module__}.{value.__qualname__}"
    return f"a {type(value).__name__}"


def _join_and(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
