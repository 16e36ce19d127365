"""The hooks a CertAuto plugin implements: their docstrings are the contract.

A plugin is a module (or object) that a distribution names in the
``certauto.destinations`` entry-point group. The core registers it with pluggy
and calls the functions in it that are decorated with :data:`hookimpl`::

    from certauto_core.plugins.contract import DestinationType
    from certauto_core.plugins.hookspecs import hookimpl

    @hookimpl
    def certauto_destination_types() -> list[DestinationType]:
        return [DestinationType(name="example", config_model=..., factory=...)]

How this module may change, so that plugins keep working across core releases:

* Hooks are only ever added, never removed or renamed. A new hook gets a new
  ``certauto_`` name, ``HOOK_API_VERSION`` goes up and the docstring says
  "Added in hook API version N".
* Arguments are only ever added to an existing hook. pluggy calls an
  implementation with just the arguments it declares, so an implementation
  written against an older, shorter signature keeps working.
* No hook is ``firstresult``: every implementation is called and every result
  is collected. Wrappers (``wrapper=True`` / ``hookwrapper=True``) are not part
  of the contract and are refused, because a plugin must not be able to edit
  another plugin's registrations.

Every name in this module is introspected by ``tests/unit/test_plugin_docs.py``,
which fails when a hook or one of its arguments is missing from
``docs/plugin-contract.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import pluggy

from certauto_core.plugins.contract import DestinationType

PROJECT_NAME: Final = "certauto"
"""pluggy project name: it prefixes every hook and names the marker attributes."""

ENTRY_POINT_GROUP: Final = "certauto.destinations"
"""The entry-point group the core scans for plugins (built-in ones included)."""

HOOK_PREFIX: Final = "certauto_"
"""Every hook name starts with this, so a misspelled one is recognisable as a mistake."""

hookspec: Final = pluggy.HookspecMarker(PROJECT_NAME)
"""Marks the specifications below; plugin authors never need it."""

hookimpl: Final = pluggy.HookimplMarker(PROJECT_NAME)
"""Decorate each hook implementation with this (``@hookimpl``).

Implementations of hooks from a newer core that must still load on an older
one can say ``@hookimpl(optionalhook=True)``; without it an implementation
whose name matches no hook here is refused as a probable misspelling.
"""


# A specification's body is never run: pluggy reads only its name, signature and
# options, hence the empty-body ignore on every spec below.


@hookspec
def certauto_destination_types() -> Sequence[DestinationType]:  # type: ignore[empty-body]
    """Return the destination types this plugin provides.

    Added in hook API version 1.

    When it is called: once, when the operator (or ``certauto plugins``)
    starts, after every plugin has been registered and before any
    CertificateBinding is reconciled. The result is cached for the life of the
    process, so the hook must be cheap and deterministic: no network calls, no
    Kubernetes API calls, no reading of credentials. Heavy set-up belongs in
    the record's ``factory``, which the core calls later with a
    :class:`~certauto_core.plugins.contract.PluginContext`.

    Arguments: none yet. Arguments added in later versions are passed only to
    implementations that declare them.

    Returns: a sequence (list or tuple) of
    :class:`~certauto_core.plugins.contract.DestinationType` records, possibly
    empty. All results are collected: every plugin's implementation is called
    and the records are merged. The core checks each record (name syntax,
    ``api_version`` not newer than ``HOOK_API_VERSION``, ``config_model`` a
    pydantic model, ``factory`` callable) and refuses a bad record with a
    message naming the plugin's distribution, without refusing the plugin's
    other records. Two records with the same ``name`` (from one plugin or from
    two) stop the operator with an error naming both distributions, because
    picking one silently could send certificates to the wrong place.

    Raising: an exception escaping the implementation marks the whole plugin
    as failed (it is logged and listed by ``certauto plugins``); the other
    plugins are unaffected.
    """
