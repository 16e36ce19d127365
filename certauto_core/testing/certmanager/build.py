"""Build cert-manager's real controller, for tests, from the Go module proxy.

cert-manager moved its controller's ``main`` into a separate Go module
(``github.com/cert-manager/cert-manager/cmd/controller``) in v1.12, and the Go
module proxy does not serve that module (``go mod download`` answers 404). The
main module ``github.com/cert-manager/cert-manager`` *is* served, and it holds
every controller package; each registers itself with ``pkg/controller`` in an
``init`` function. So the build writes a small wrapper module whose ``main``
(``controller/main.go`` beside this file) imports the controllers needed to
issue from SelfSigned and CA issuers and runs them, exactly as cert-manager's
own ``cmd/controller/app`` does.

The wrapper's module path is under cert-manager's (``github.com/cert-manager/
cert-manager/certauto-testcontroller``) so that, should a later version move a
needed package under ``internal/``, the wrapper may still import it.

The binary lands in ``<cache>/certmanager/cert-manager-<version>/``; a second
build finds it there and does nothing. Nothing built is written into the repo.
A cold build takes about four minutes on two cores (the Kubernetes client
libraries dominate; a warm Go build cache halves it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from certauto_core.testing.controlplane.build import BuildError, cache_root

CERT_MANAGER_VERSION = "v1.21.2"
"""Keep equal to :data:`certauto_core.testing.kube.CERT_MANAGER_VERSION` (the CRDs)."""
WRAPPER_MODULE = "github.com/cert-manager/cert-manager/certauto-testcontroller"
BINARY_NAME = "certauto-cert-manager-controller"


@dataclass(frozen=True)
class ControllerBinary:
    """Where the controller of one cert-manager version lives (built or not)."""

    directory: Path
    version: str

    @property
    def path(self) -> Path:
        return self.directory / BINARY_NAME

    def present(self) -> bool:
        return os.access(self.path, os.X_OK)


def controller_binary(version: str = CERT_MANAGER_VERSION) -> ControllerBinary:
    return ControllerBinary(cache_root() / "certmanager" / f"cert-manager-{version}", version)


def main_source() -> str:
    """The wrapper's ``main.go``, shipped as package data."""
    return (
        resources.files("certauto_core.testing.certmanager")
        .joinpath("controller")
        .joinpath("main.go")
        .read_text()
    )


def _go(args: list[str], cwd: Path) -> None:
    env = dict(os.environ, GOFLAGS="-mod=mod", CGO_ENABLED="0", GOWORK="off")
    print(f"  $ go {' '.join(args)}", file=sys.stderr, flush=True)
    done = subprocess.run(
        ["go", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        raise BuildError(f"go {' '.join(args)} failed in {cwd}:\n{tail}")


def build(target: ControllerBinary, workdir: Path) -> None:
    """Write the wrapper module into ``workdir``, resolve it, build the binary."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "go.mod").write_text(
        f"module {WRAPPER_MODULE}\n\ngo 1.26.0\n\n"
        f"require github.com/cert-manager/cert-manager {target.version}\n"
    )
    (workdir / "main.go").write_text(main_source())
    _go(["mod", "tidy"], workdir)
    target.directory.mkdir(parents=True, exist_ok=True)
    partial = target.directory / f".{BINARY_NAME}.{os.getpid()}.partial"
    _go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(partial), "."], workdir)
    partial.replace(target.path)  # atomic: a half-written binary is never "present"


def ensure_built(
    target: ControllerBinary | None = None, *, force: bool = False
) -> ControllerBinary:
    """Build unless the binary is cached; return where it is."""
    target = target or controller_binary()
    if target.present() and not force:
        return target
    if shutil.which("go") is None:
        raise BuildError("the `go` command is needed to build cert-manager's controller")
    print(
        f"building cert-manager {target.version} controller (a cold build takes minutes) ...",
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="certauto-cm-build-") as tmp:
        build(target, Path(tmp))
    print(
        f"built cert-manager {target.version} controller in {time.monotonic() - started:.0f}s",
        file=sys.stderr,
        flush=True,
    )
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m certauto_core.testing.certmanager",
        description="Build (once) and locate the cert-manager controller used by the tests.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build_command = sub.add_parser("build", help="build the controller unless it is cached")
    build_command.add_argument("--force", action="store_true", help="rebuild even when present")
    sub.add_parser("where", help="print the path of the controller binary")
    args = parser.parse_args(argv)
    target = controller_binary()
    if args.command == "where":
        print(target.path)
        return 0
    if target.present() and not args.force:
        print(f"up to date: {target.path}")
        return 0
    try:
        ensure_built(target, force=args.force)
    except BuildError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"built: {target.path}")
    return 0
