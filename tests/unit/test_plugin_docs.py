"""docs/plugin-contract.md documents every part of the plugin contract the code defines.

Third-party authors build on the contract page, not on our source. So the names are
taken from the code by introspection (hooks and their arguments, the protocols'
methods and parameters, the records' fields, the error classes), and each must
appear in the page where a reader looks for it:

* a name is documented when it is in backticks in a heading, or is the term of a
  definition-list entry: a bullet that starts with it (``- `name`: ...``) or a line
  holding it followed by a ``: definition`` line;
* a member must be documented *inside* its owner's section: a method's parameters
  under the method's heading, which sits under the class's heading; a field under
  its record's heading. Documenting ``target`` for ``observe`` does not document it
  for ``publish``.

Fenced code blocks do not count: an example is not documentation of a name.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from certauto_core.plugins import contract, errors, hookspecs, manager

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "plugin-contract.md"

Requirement = tuple[str, ...]
"""A path of names, outermost first: ``("Destination", "publish", "material")``."""

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_BULLET_TERM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s+`([^`]+)`")
_LINE_TERM = re.compile(r"^\s*`([^`]+)`")
_DEFINITION = re.compile(r"^\s*:\s")
_CODE_SPAN = re.compile(r"`([^`]+)`")
_IDENTIFIER = re.compile(r"\s*((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)")


def span_name(span: str) -> str | None:
    """The name a code span documents: ``Destination.retract(target, *, delete)`` → ``retract``."""
    match = _IDENTIFIER.match(span)
    return match.group(1).rsplit(".", 1)[-1] if match else None


@dataclass(frozen=True)
class Section:
    """A heading and its scope: the lines up to the next heading of its level or higher."""

    names: frozenset[str]
    spans: tuple[str, ...]
    start: int
    end: int


@dataclass(frozen=True)
class Term:
    name: str
    line: int


@dataclass(frozen=True)
class ParsedDoc:
    sections: tuple[Section, ...]
    terms: tuple[Term, ...]
    length: int


def parse_doc(text: str) -> ParsedDoc:
    lines = text.splitlines()
    in_fence = False
    prose: list[tuple[int, str]] = []
    for number, line in enumerate(lines):
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            prose.append((number, line))

    headings: list[tuple[int, int, str]] = []
    terms: list[Term] = []
    for index, (number, line) in enumerate(prose):
        heading = _HEADING.match(line)
        if heading:
            headings.append((number, len(heading.group(1)), heading.group(2)))
            continue
        term = _BULLET_TERM.match(line)
        if term is None:
            following = next((text for _, text in prose[index + 1 :] if text.strip()), "")
            if _DEFINITION.match(following):
                term = _LINE_TERM.match(line)
        if term is not None:
            name = span_name(term.group(1))
            if name is not None:
                terms.append(Term(name=name, line=number))

    sections = []
    for position, (number, level, title) in enumerate(headings):
        end = next((n for n, lvl, _ in headings[position + 1 :] if lvl <= level), len(lines))
        spans = tuple(_CODE_SPAN.findall(title))
        names = frozenset(name for name in map(span_name, spans) if name is not None)
        sections.append(Section(names=names, spans=spans, start=number, end=end))
    return ParsedDoc(sections=tuple(sections), terms=tuple(terms), length=len(lines))


def is_documented(doc: ParsedDoc, requirement: Requirement) -> bool:
    """Walk down the requirement's path: each name a heading inside the previous one's
    scope, the last one a heading or a definition term there."""
    scopes = [(-1, doc.length)]
    for depth, name in enumerate(requirement):
        inner = [
            (section.start, section.end)
            for start, end in scopes
            for section in doc.sections
            if start < section.start < end and name in section.names
        ]
        if depth == len(requirement) - 1:
            return bool(inner) or any(
                start < term.line < end and term.name == name
                for start, end in scopes
                for term in doc.terms
            )
        scopes = inner
    return False


def undocumented(doc_text: str, requirements: Iterable[Requirement]) -> list[str]:
    doc = parse_doc(doc_text)
    return [
        " > ".join(requirement)
        for requirement in requirements
        if not is_documented(doc, requirement)
    ]


# -- what the code defines ---------------------------------------------------------


def hook_specs() -> dict[str, types.FunctionType]:
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return {
        name: function
        for name, function in vars(hookspecs).items()
        if name.startswith(hookspecs.HOOK_PREFIX)
        and inspect.isfunction(function)
        and hasattr(function, marker)
    }


def _defined_in(module: types.ModuleType) -> Iterator[type]:
    for value in vars(module).values():
        if inspect.isclass(value) and value.__module__ == module.__name__:
            yield value


def _parameters(function: Callable[..., object]) -> list[str]:
    return [name for name in inspect.signature(function).parameters if name != "self"]


def contract_requirements() -> list[Requirement]:
    found: list[Requirement] = [
        ("HOOK_API_VERSION",),
        ("ENTRY_POINT_GROUP",),
        ("hookimpl",),
        (manager.BLOCK_PLUGINS_ENV,),
    ]
    for name, spec in hook_specs().items():
        found.append((name,))
        found += [(name, argument) for argument in _parameters(spec)]
    for cls in _defined_in(contract):
        if getattr(cls, "_is_protocol", False):
            found.append((cls.__name__,))
            for member, value in vars(cls).items():
                if member.startswith("_") or not inspect.isfunction(value):
                    continue
                found.append((cls.__name__, member))
                found += [(cls.__name__, member, param) for param in _parameters(value)]
        elif dataclasses.is_dataclass(cls):
            found.append((cls.__name__,))
            found += [(cls.__name__, field.name) for field in dataclasses.fields(cls)]
            found += [
                (cls.__name__, member)
                for member, value in vars(cls).items()
                if isinstance(value, property) and not member.startswith("_")
            ]
    for module in (errors, manager):
        for cls in _defined_in(module):
            if issubclass(cls, errors.DestinationError):
                found.append((cls.__name__,))
    found += [("RetryableError", "retry_after"), ("DestinationError", "message")]
    return found


# -- the checks -------------------------------------------------------------------


def test_every_part_of_the_contract_is_documented() -> None:
    missing = undocumented(DOC_PATH.read_text(), contract_requirements())
    assert not missing, (
        f"undocumented in {DOC_PATH.name} (document each under its owner's heading, as a "
        "heading or a '- `name`: ...' entry): " + "; ".join(missing)
    )


def test_documented_hooks_exist() -> None:
    """A hook heading for a hook that does not exist (renamed, misspelled) is stale."""
    doc = parse_doc(DOC_PATH.read_text())
    documented = {
        span_name(span)
        for section in doc.sections
        for span in section.spans
        if span.startswith(hookspecs.HOOK_PREFIX) and "(" in span
    }
    assert documented, "no hook headings found: the parser or the page is broken"
    assert documented <= set(hook_specs()), documented - set(hook_specs())


@pytest.mark.parametrize("name", sorted(hook_specs()))
def test_hook_docstring_states_the_contract(name: str) -> None:
    docstring = inspect.getdoc(hook_specs()[name]) or ""
    assert re.search(r"Added in hook API version \d+", docstring), name
    assert "Returns:" in docstring, name
    assert "When it is called:" in docstring, name


def test_introspection_sees_the_contract() -> None:
    """Guards the guard: an introspection that found nothing would pass any page."""
    requirements = set(contract_requirements())
    expected = {
        ("certauto_destination_types",),
        ("Destination", "check_material", "material"),
        ("Destination", "observe", "target"),
        ("Destination", "publish", "material"),
        ("Destination", "retract", "delete"),
        ("Destination", "aclose"),
        ("SecretIndex", "owned_by", "binding"),
        ("DestinationType", "api_version"),
        ("Target", "config"),
        ("Observation", "fingerprint"),
        ("PublishResult", "writes"),
        ("BindingRef", "key"),
        ("ConflictError",),
        ("UnknownDestinationType",),
        ("CERTAUTO_BLOCK_PLUGINS",),
    }
    assert expected <= requirements, expected - requirements


SAMPLE = """
# Contract

## `Destination`

### `observe(target)`

- `target`: what to look at.

### `publish(material, target)`

- `material`: what to publish.

```python
# `target` in a code block documents nothing
target = 1
```

## `Observation`

`fingerprint`
: the leaf's fingerprint.

## `Stray`

- `drift`: documented, but under the wrong record.
"""


def test_checker_catches_an_undocumented_name() -> None:
    requirements = [
        ("Destination", "observe", "target"),  # documented
        ("Destination", "publish", "material"),  # documented
        ("Destination", "publish", "target"),  # only in a code block
        ("Destination", "retract"),  # absent
        ("Observation", "fingerprint"),  # documented as a definition-list term
        ("Observation", "drift"),  # documented under another heading only
        ("certauto_new_hook",),  # absent
    ]

    assert undocumented(SAMPLE, requirements) == [
        "Destination > publish > target",
        "Destination > retract",
        "Observation > drift",
        "certauto_new_hook",
    ]


def test_checker_reads_names_out_of_signatures() -> None:
    assert span_name("Destination.retract(target, *, delete)") == "retract"
    assert span_name("CERTAUTO_BLOCK_PLUGINS") == "CERTAUTO_BLOCK_PLUGINS"
    assert span_name("(not a name)") is None
