"""Run etcd and kube-apiserver on free 127.0.0.1 ports, and tear them down for sure.

Both processes are started in their own session with ``PR_SET_PDEATHSIG`` set,
so they die with the process that started them even when that process is
killed with SIGKILL; :meth:`ControlPlane.stop` terminates and reaps them on
every normal path (success, failure, Ctrl-C).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import yaml

from certauto_core.testing.controlplane.build import Binaries, ensure_built
from certauto_core.testing.controlplane.pki import ClusterPKI, KeyPair

ADMIN_USER = "certauto-test-admin"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when the parent dies.

    SIGKILL, not SIGTERM: with etcd gone too, a terminating API server lingers
    for its whole grace period. Nothing in a test cluster is worth saving.
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ControlPlaneError(RuntimeError):
    """The control plane did not come up; the message carries the process logs' tail."""


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    def tail(self, lines: int = 30) -> str:
        self.log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver with RBAC, and the credentials to talk to it."""

    binaries: Binaries | None = None
    workdir: Path | None = None
    pki: ClusterPKI = field(default_factory=ClusterPKI)
    server: str = ""
    apiserver_args: tuple[str, ...] = ()
    """Extra kube-apiserver flags, e.g. ``("--etcd-compaction-interval=5s",)``."""
    _processes: list[_Process] = field(default_factory=list)
    _owns_workdir: bool = False

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 90.0) -> ControlPlane:
        """Start etcd and kube-apiserver; return when ``/readyz`` says ok."""
        self.binaries = ensure_built(self.binaries)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="certauto-cp-"))
            self._owns_workdir = True
        try:
            self._start_etcd()
            self._start_apiserver()
            self._wait_ready(timeout)
            self.write_kubeconfig(self.kubeconfig_path, ADMIN_USER, ("system:masters",))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate every process (SIGTERM, then SIGKILL) and reap it; remove the workdir.

        The API server goes first: with etcd gone it would spend its whole
        shutdown grace period retrying storage.
        """
        for process in reversed(self._processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.popen.pid, signal.SIGTERM)
            try:
                process.popen.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.popen.pid, signal.SIGKILL)
                process.popen.wait()
            process.log.close()
        self._processes.clear()
        if self._owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        return [process.popen.pid for process in self._processes]

    @property
    def kubeconfig_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "kubeconfig"

    @property
    def ca_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "pki" / "ca.crt"

    # ------------------------------------------------------------------ credentials
    def write_kubeconfig(
        self, path: Path, user: str, groups: tuple[str, ...] = (), *, token: str | None = None
    ) -> Path:
        """A kubeconfig for ``user`` (a client certificate) or for a bearer ``token``."""
        credentials: dict[str, Any]
        if token is not None:
            credentials = {"token": token}
        else:
            pair = self.pki.client(user, groups)
            credentials = {
                "client-certificate-data": _b64(pair.cert_pem),
                "client-key-data": _b64(pair.key_pem),
            }
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "certauto-test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": _b64(self.pki.ca_pem),
                    },
                }
            ],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": user, "context": {"cluster": "certauto-test", "user": user}}],
            "current-context": user,
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def ssl_context(self, client: KeyPair | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.pki.ca_pem.decode())
        if client is not None:
            assert self.workdir is not None
            with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
                cert, key = client.write(Path(tmp), "client")
                context.load_cert_chain(cert, key)
        return context

    def get_json(self, path: str, *, client: KeyPair | None = None) -> Any:
        """A GET as ``client`` (the admin by default), for harness checks and metrics."""
        context = self.ssl_context(client or self.pki.client(ADMIN_USER, ("system:masters",)))
        with urllib.request.urlopen(self.server + path, context=context, timeout=10) as response:  # noqa: S310
            body = response.read()
        try:
            return json.loads(body)
        except ValueError:
            return body.decode()

    # ------------------------------------------------------------------ internals
    def _spawn(self, name: str, argv: list[str]) -> _Process:
        assert self.workdir is not None
        log_path = self.workdir / f"{name}.log"
        log = log_path.open("ab")
        popen = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # prctl only: safe between fork and exec
        )
        process = _Process(name, popen, log_path, log)
        self._processes.append(process)
        return process

    def _start_etcd(self) -> None:
        assert self.binaries is not None
        assert self.workdir is not None
        client, peer = free_port(), free_port()
        self._etcd_url = f"http://127.0.0.1:{client}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=certauto-test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self._etcd_url}",
                f"--advertise-client-urls={self._etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=certauto-test=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )

    def _start_apiserver(self) -> None:
        assert self.binaries is not None
        assert self.workdir is not None
        pki_dir = self.workdir / "pki"
        pki_dir.mkdir(exist_ok=True)
        self.ca_path.write_bytes(self.pki.ca_pem)
        serving_cert, serving_key = self.pki.serving().write(pki_dir, "apiserver")
        sa_key, sa_pub = self.pki.write_service_account_keys(pki_dir)
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={self._etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={serving_cert}",
                f"--tls-private-key-file={serving_key}",
                f"--client-ca-file={self.ca_path}",
                f"--cert-dir={pki_dir}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--disable-admission-plugins=ServiceAccount",
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                "--v=0",
                *self.apiserver_args,
            ],
        )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            for process in self._processes:
                if process.popen.poll() is not None:
                    raise ControlPlaneError(
                        f"{process.name} exited with {process.popen.returncode}:\n{process.tail()}"
                    )
            try:
                if self.get_json("/readyz") == "ok":
                    return
            except (urllib.error.URLError, OSError, ValueError) as error:
                last = str(error)
            time.sleep(0.25)
        tails = "\n".join(f"--- {p.name}\n{p.tail()}" for p in self._processes)
        raise ControlPlaneError(f"kube-apiserver not ready after {timeout}s ({last})\n{tails}")


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()
