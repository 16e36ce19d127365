"""The reflector's config: Kubernetes label selector semantics and name rules (pure logic)."""

from __future__ import annotations

from typing import Any

import pytest
from certauto_reflector.config import LabelSelector, ReflectorConfig
from pydantic import ValidationError

PROD = {"env": "prod", "team": "a"}
DEV = {"env": "dev"}
BARE: dict[str, str] = {}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({}, (True, True, True)),  # empty selects everything, as in Kubernetes
        ({"matchLabels": {"env": "prod"}}, (True, False, False)),
        ({"matchLabels": {"env": "prod", "team": "b"}}, (False, False, False)),
        (
            {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]},
            (True, True, False),
        ),
        (
            {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]},
            (False, True, True),
        ),
        ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, (True, False, False)),
        ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, (False, True, True)),
        (
            {
                "matchLabels": {"env": "prod"},
                "matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}],
            },
            (True, False, False),
        ),
    ],
)
def test_selector_semantics(selector: dict[str, Any], expected: tuple[bool, bool, bool]) -> None:
    parsed = LabelSelector.model_validate(selector)

    assert (parsed.matches(PROD), parsed.matches(DEV), parsed.matches(BARE)) == expected


@pytest.mark.parametrize(
    "requirement",
    [
        {"key": "env", "operator": "In", "values": []},
        {"key": "env", "operator": "NotIn"},
        {"key": "env", "operator": "Exists", "values": ["x"]},
        {"key": "env", "operator": "DoesNotExist", "values": ["x"]},
        {"key": "env", "operator": "in", "values": ["x"]},
        {"key": "bad key!", "operator": "Exists"},
    ],
)
def test_bad_requirements_are_refused(requirement: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        LabelSelector.model_validate({"matchExpressions": [requirement]})


def test_the_default_name_is_the_bindings() -> None:
    config = ReflectorConfig.model_validate({"namespaces": ["a"]})
    named = ReflectorConfig.model_validate({"namespaces": ["a"], "secretName": "web-tls"})

    assert config.copy_name("web") == "web"
    assert named.copy_name("web") == "web-tls"


@pytest.mark.parametrize(
    "config",
    [
        {"namespaces": ["a"], "labels": {"app.kubernetes.io/managed-by": "me"}},
        {"namespaces": ["a"], "annotations": {"certauto.sanorg.in/binding": "x/y"}},
        {"namespaces": ["a"], "labels": {"x" * 64: "v"}},
        {"namespaces": ["a"], "labels": {"k": "v" * 64}},
        {"namespaces": ["a" * 64]},
        {"namespaces": ["a"], "secretName": "-web"},
    ],
)
def test_metadata_and_names_follow_kubernetes_rules(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ReflectorConfig.model_validate(config)


def test_a_selector_alone_is_enough() -> None:
    config = ReflectorConfig.model_validate({"namespaceSelector": {}})

    assert config.namespaces == ()
    assert config.namespace_selector is not None
