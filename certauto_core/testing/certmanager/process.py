"""Run cert-manager's controller against a test control plane, and stop it for sure.

Like the control plane's processes, the controller runs in its own session with
``PR_SET_PDEATHSIG``, so it dies with the process that started it even when that
process is killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from certauto_core.testing.certmanager.build import ControllerBinary, ensure_built

READY_LINE = b"certauto-cert-manager-controller: controllers started"
CLUSTER_RESOURCE_NAMESPACE = "cert-manager"
"""Where the Secrets of ClusterIssuers live (cert-manager's ``--cluster-resource-namespace``)."""
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when the parent dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class CertManagerError(RuntimeError):
    """The controller did not start; the message carries its log's tail."""


@dataclass
class CertManagerController:
    """cert-manager's controller process, acting with ``kubeconfig``."""

    kubeconfig: Path
    binary: ControllerBinary | None = None
    cluster_resource_namespace: str = CLUSTER_RESOURCE_NAMESPACE
    workdir: Path | None = None
    _popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None
    _owns_workdir: bool = field(default=False, repr=False)

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "cert-manager-controller.log"

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    def start(self, timeout: float = 60.0) -> CertManagerController:
        """Start the controller; return once every controller runs."""
        self.binary = ensure_built(self.binary)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="certauto-cm-"))
            self._owns_workdir = True
        self._log = self.log_path.open("ab")
        self._popen = subprocess.Popen(
            [
                str(self.binary.path),
                f"--kubeconfig={self.kubeconfig}",
                f"--cluster-resource-namespace={self.cluster_resource_namespace}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # prctl only: safe between fork and exec
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self._popen is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._popen.poll() is not None:
                raise CertManagerError(
                    f"cert-manager's controller exited with {self._popen.returncode}:\n"
                    + self.tail()
                )
            if READY_LINE in self.log_path.read_bytes():
                return
            time.sleep(0.1)
        raise CertManagerError(f"cert-manager's controller not up after {timeout}s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        if self._log is not None:
            self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after five seconds; reap; remove the workdir."""
        if self._popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._popen.pid, signal.SIGTERM)
            try:
                self._popen.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._popen.pid, signal.SIGKILL)
                self._popen.wait()
            self._popen = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> CertManagerController:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
