"""Automation for the CertAuto workspace: ``nox -l`` lists what each session does.

Packages are discovered, not listed: the core at the root and every directory
under ``plugins/`` with a ``pyproject.toml``. A new plugin needs no edit here.
Each package's tests run in a virtualenv synced from the workspace lock with
only that package and its declared dependencies, installed non-editable, which
proves the dependency list of each package is complete.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import nox

ROOT = Path(__file__).parent
nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "typecheck", "tests", "charts", "e2e"]
nox.options.reuse_venv = "yes"


@dataclass(frozen=True)
class Package:
    """A distribution of the workspace and where its tests live."""

    distribution: str
    directory: Path
    test_group: str | None
    """The dependency group (PEP 735) holding its test dependencies, or None for extras."""

    @property
    def tests(self) -> Path:
        return self.directory / "tests"


def _discover() -> list[Package]:
    packages = [Package("certauto-core", ROOT, None)]
    for pyproject in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())
        groups = project.get("dependency-groups", {})
        packages.append(
            Package(
                project["project"]["name"], pyproject.parent, "test" if "test" in groups else None
            )
        )
    return packages


PACKAGES = _discover()


def _uv() -> str:
    """The uv binary nox itself uses (the ``uv`` package's), else the one on PATH."""
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return "uv"
    return str(find_uv_bin())


UV = _uv()


def _sync(session: nox.Session, *args: str) -> None:
    """Install from the workspace lock into this session's virtualenv."""
    env = {"UV_PROJECT_ENVIRONMENT": str(session.virtualenv.location)}
    session.run_install(UV, "sync", "--frozen", "--inexact", *args, env=env, external=True)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """Ruff: lint rules and formatting, over every package, the tests and this file."""
    session.run(UV, "run", "--frozen", "ruff", "check", ".", external=True)
    session.run(UV, "run", "--frozen", "ruff", "format", "--check", ".", external=True)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the core, every plugin, their tests and this noxfile."""
    _sync(session, "--all-packages")
    session.run("mypy", "certauto_core", "tests", "benchmarks", "noxfile.py")
    # One run per plugin: every package's tests have a conftest.py of their own.
    for package in PACKAGES[1:]:
        targets = [str(package.directory / package.directory.name)]
        if package.tests.is_dir():
            targets.append(str(package.tests))
        search = os.pathsep.join([str(package.directory), str(package.tests)])
        session.run("mypy", *targets, env={"MYPYPATH": search})


def _controlplane(session: nox.Session) -> None:
    """Build (once; cached) etcd, kube-apiserver and the test cert-manager controller."""
    session.run("python", "-m", "certauto_core.testing.controlplane", "build")
    session.run("python", "-m", "certauto_core.testing.certmanager", "build")


@nox.session
@nox.parametrize("package", [p.distribution for p in PACKAGES])
def tests(session: nox.Session, package: str) -> None:
    """Each package's tests, alone in a virtualenv with only its declared dependencies."""
    chosen = next(p for p in PACKAGES if p.distribution == package)
    args = ["--package", chosen.distribution, "--no-editable", "--no-default-groups"]
    if chosen.test_group is not None:
        args += ["--group", chosen.test_group]
    else:
        args += ["--extra", "testing"]
    _sync(session, *args)
    _controlplane(session)
    if not chosen.tests.is_dir():
        session.error(f"{chosen.distribution} has no tests/ directory")
    session.chdir(chosen.directory)
    # Run from the installed packages, never from the source tree.
    # The chart's tests need helm and the reflector: they have a session of their own.
    # So do the demo and failover tests (every plugin): sessions `charts` and `e2e`.
    ignore = (
        ["--ignore=tests/chart", "--ignore=tests/demo", "--ignore=tests/failover"]
        if chosen.directory == ROOT
        else []
    )
    session.run(
        "python",
        "-P",
        "-m",
        "pytest",
        "tests",
        *ignore,
        *session.posargs,
        env={"PYTHONDONTWRITEBYTECODE": "1", **_passthrough()},
    )


def _passthrough() -> dict[str, str]:
    keep = ("CERTAUTO_CACHE_DIR", "GOFLAGS", "GOPROXY", "GOCACHE", "GOMODCACHE")
    return {key: os.environ[key] for key in keep if key in os.environ}


@nox.session
def charts(session: nox.Session) -> None:
    """Helm chart: lint --strict and render every ci/ values file, apply each render to a
    real API server, then the chart tests (RBAC proven with the operator)."""
    _sync(
        session,
        "--package",
        "certauto-reflector",
        "--no-editable",
        "--no-default-groups",
        "--group",
        "test",
    )
    _controlplane(session)
    session.run("python", "-m", "certauto_core.testing.helm", "build")
    session.run("python", "-m", "certauto_core.testing.helm", "check")
    session.run(
        "python",
        "-P",
        "-m",
        "pytest",
        "tests/chart",
        *session.posargs,
        env={"PYTHONDONTWRITEBYTECODE": "1", **_passthrough()},
    )


@nox.session
def demo(session: nox.Session) -> None:
    """CertAuto end to end on this machine: a local control plane, the ACM and Key Vault
    emulators, the operator with every plugin and the bindings in examples/, until Ctrl-C.

    ``nox -s demo -- --kubeconfig PATH`` uses an existing cluster instead;
    ``-- --exit-when-ready`` stops once every binding is Ready.
    """
    _sync(session, "--all-packages")
    if not any(arg.startswith("--kubeconfig") for arg in session.posargs):
        _controlplane(session)
    session.run(
        "python",
        "-m",
        "certauto_core.testing.demo",
        *session.posargs,
        env=_passthrough(),
        # Ctrl-C reaches the demo too: give it time to tear everything down.
        interrupt_timeout=60,
    )


@nox.session
def e2e(session: nox.Session) -> None:
    """The demo end to end and the leader failover test: they need every plugin."""
    _sync(session, "--all-packages")
    _controlplane(session)
    session.run(
        "python",
        "-m",
        "pytest",
        "tests/demo",
        "tests/failover",
        *session.posargs,
        env=_passthrough(),
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks on a real local control plane: a table, and JSON in benchmarks/results/.

    ``nox -s bench -- --quick`` for a smoke run; ``nox -s bench -- --help`` for scenarios
    and sizes.
    """
    _sync(session, "--all-packages")
    _controlplane(session)
    session.run("python", "-m", "benchmarks.run", *session.posargs, env=_passthrough())
