"""Build etcd and kube-apiserver from the Go module proxy into a versioned cache.

Neither project ships a Go module whose ``main`` can simply be ``go install``-ed:

* ``k8s.io/kubernetes`` replaces every ``k8s.io/*`` staging module with a local
  path (``=> ./staging/src/k8s.io/X``). We read those lines from its own go.mod
  (through ``go mod download -json``) and write a throwaway wrapper module that
  replaces each of them with ``k8s.io/X`` at the matching ``v0`` release.
* ``go.etcd.io/etcd/server/v3`` has ``../api``-style replaces, which only apply
  when it is the main module; as a dependency of a wrapper module they are
  ignored and the published siblings are used. The wrapper's ``main`` calls
  ``etcdmain.Main`` exactly like etcd's own ``main.go``.

The binaries land in ``<cache>/controlplane/k8s-<v>_etcd-<v>/``; a second build
finds them there and does nothing. Nothing built is written into the repo.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.37.2"
ETCD_VERSION = "v3.6.16"

_STAGING_REPLACE = re.compile(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/src/\1\s*$", re.M)


@dataclass(frozen=True)
class Binaries:
    """Paths of a built control plane."""

    directory: Path
    kubernetes_version: str
    etcd_version: str

    @property
    def kube_apiserver(self) -> Path:
        return self.directory / "kube-apiserver"

    @property
    def etcd(self) -> Path:
        return self.directory / "etcd"

    def present(self) -> bool:
        return all(os.access(p, os.X_OK) for p in (self.kube_apiserver, self.etcd))


def cache_root() -> Path:
    """``$CERTAUTO_CACHE_DIR`` or ``$XDG_CACHE_HOME/certauto`` or ``~/.cache/certauto``."""
    explicit = os.environ.get("CERTAUTO_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "certauto"


def binaries(
    kubernetes_version: str = KUBERNETES_VERSION, etcd_version: str = ETCD_VERSION
) -> Binaries:
    """Where the binaries of these versions live (built or not)."""
    directory = cache_root() / "controlplane" / f"k8s-{kubernetes_version}_etcd-{etcd_version}"
    return Binaries(directory, kubernetes_version, etcd_version)


class BuildError(RuntimeError):
    """A go command failed; the message carries its output's tail."""


def _go(args: list[str], cwd: Path, *, log: bool = True) -> str:
    env = dict(os.environ, GOFLAGS="-mod=mod", CGO_ENABLED="0", GOWORK="off")
    if log:
        print(f"  $ go {' '.join(args)}", file=sys.stderr, flush=True)
    done = subprocess.run(
        ["go", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        raise BuildError(f"go {' '.join(args)} failed in {cwd}:\n{tail}")
    return done.stdout


def staging_replacements(kubernetes_version: str, workdir: Path) -> dict[str, str]:
    """Map each staging module of k8s.io/kubernetes to its published v0 release."""
    info = json.loads(
        _go(["mod", "download", "-json", f"k8s.io/kubernetes@{kubernetes_version}"], workdir)
    )
    gomod = Path(info["GoMod"]).read_text()
    minor = kubernetes_version.removeprefix("v1.")
    staging = sorted(set(_STAGING_REPLACE.findall(gomod)))
    if not staging:
        raise BuildError(f"no staging replaces found in k8s.io/kubernetes@{kubernetes_version}")
    return {module: f"v0.{minor}" for module in staging}


def _write_module(
    directory: Path, module: str, requires: dict[str, str], replaces: dict[str, str]
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"module {module}", "", "go 1.26.0", "", "require ("]
    lines += [f"\t{path} {version}" for path, version in requires.items()]
    lines.append(")")
    if replaces:
        lines += ["", "replace ("]
        lines += [f"\t{path} => {path} {version}" for path, version in replaces.items()]
        lines.append(")")
    (directory / "go.mod").write_text("\n".join(lines) + "\n")


def build_kube_apiserver(target: Binaries, workdir: Path) -> None:
    version = target.kubernetes_version
    module_dir = workdir / "kube-apiserver"
    module_dir.mkdir(parents=True, exist_ok=True)
    replaces = staging_replacements(version, module_dir)
    # The tools-tagged blank import makes `go mod tidy` resolve the whole graph of
    # the main package; the binary is then built from its package path.
    tools = '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver"\n'
    _write_module(
        module_dir, "certauto.test/kube-apiserver", {"k8s.io/kubernetes": version}, replaces
    )
    (module_dir / "tools.go").write_text(tools)
    _go(["mod", "tidy"], module_dir)
    major, minor = version.removeprefix("v").split(".")[:2]
    stamps = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    ldflags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        ldflags += [f"-X {package}.{name}={value}" for name, value in stamps.items()]
    _go(
        [
            "build",
            "-trimpath",
            "-ldflags",
            " ".join(ldflags),
            "-o",
            str(target.kube_apiserver),
            "k8s.io/kubernetes/cmd/kube-apiserver",
        ],
        module_dir,
    )


def build_etcd(target: Binaries, workdir: Path) -> None:
    module_dir = workdir / "etcd"
    main = (
        "// Command etcd is etcd's own main, with go.etcd.io/etcd/server/v3 as a dependency.\n"
        "package main\n\n"
        'import (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
        "func main() { etcdmain.Main(os.Args) }\n"
    )
    _write_module(
        module_dir, "certauto.test/etcd", {"go.etcd.io/etcd/server/v3": target.etcd_version}, {}
    )
    (module_dir / "main.go").write_text(main)
    _go(["mod", "tidy"], module_dir)
    _go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(target.etcd), "."], module_dir)


def ensure_built(target: Binaries | None = None, *, force: bool = False) -> Binaries:
    """Build what is missing; return at once when both binaries are cached."""
    target = target or binaries()
    if target.present() and not force:
        return target
    if shutil.which("go") is None:
        raise BuildError("the `go` command is needed to build etcd and kube-apiserver")
    target.directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="certauto-build-") as tmp:
        workdir = Path(tmp)
        if force or not os.access(target.etcd, os.X_OK):
            _timed(f"etcd {target.etcd_version}", lambda: build_etcd(target, workdir))
        if force or not os.access(target.kube_apiserver, os.X_OK):
            _timed(
                f"kube-apiserver {target.kubernetes_version}",
                lambda: build_kube_apiserver(target, workdir),
            )
    return target


def _timed(what: str, build: Callable[[], None]) -> None:
    print(f"building {what} (cold builds take minutes) ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    build()
    print(f"built {what} in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m certauto_core.testing.controlplane",
        description="Build (once) and locate the etcd and kube-apiserver used by the tests.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the binaries into the cache unless present")
    build.add_argument("--force", action="store_true", help="rebuild even when present")
    sub.add_parser("where", help="print the cache directory of the binaries")
    args = parser.parse_args(argv)
    target = binaries()
    if args.command == "where":
        print(target.directory)
        return 0
    if target.present() and not args.force:
        print(f"up to date: {target.directory}")
        return 0
    try:
        ensure_built(target, force=args.force)
    except BuildError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"built: {target.directory}")
    return 0
