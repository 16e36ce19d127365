"""AWS Certificate Manager for tests: moto's server in-process, behind a recording proxy.

Three pieces, each usable on its own:

* :class:`MotoServer` runs moto's server (as moto's ``ThreadedMotoServer`` does) on
  127.0.0.1, a free port, in its own thread, and resets it with ``POST /moto-api/reset``.
* :class:`AcmProxy` is a small aiohttp reverse proxy on 127.0.0.1 in front of moto. It
  records every request's ``X-Amz-Target`` operation and JSON body (so a test can see
  exactly what a client *sent*: moto is laxer than ACM and accepts ``Tags`` on a
  re-import, real ACM rejects them), answers injected faults (``ThrottlingException``
  for the first N calls of an operation, say), and forwards everything else to moto.
* :class:`AcmHandle` ties them together for one test: endpoint, region, dummy
  credentials, the proxy's call log, and an ``aiobotocore`` ACM client factory.

Fixtures: ``moto_server`` (session), ``acm_proxy`` (session) and ``acm`` (function:
resets moto and the proxy, yields an :class:`AcmHandle`). The async fixtures run on the
session-scoped event loop, so tests that use them must run on it too (the project's
pytest configuration makes that the default).

Nothing here reaches beyond 127.0.0.1: the clients get explicit dummy credentials and an
explicit endpoint, and the ``acm`` fixture sets ``AWS_EC2_METADATA_DISABLED=true`` and
points the AWS config and credentials files at paths that do not exist, so no profile,
instance-metadata or SSO lookup can happen.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import pytest
import pytest_asyncio
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from aiohttp import web
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from certauto_core.testing.faults import CannedResponse, FaultPlan

__all__ = [
    "ACCESS_KEY_ID",
    "DEFAULT_REGION",
    "SECRET_ACCESS_KEY",
    "AcmCall",
    "AcmHandle",
    "AcmProxy",
    "MotoServer",
    "acm",
    "acm_proxy",
    "moto_server",
]

DEFAULT_REGION = "us-east-1"
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"  # noqa: S105 - a dummy credential for moto
_LOOPBACK = "127.0.0.1"
_AMZ_JSON = "application/x-amz-json-1.1"
# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones aiohttp recomputes itself.
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


class _MotoRequestHandler(MotoRequestHandler):
    """moto's request handler, minus werkzeug's own ``Server`` header and access log.

    moto's responses carry ``Server: amazon.com`` and werkzeug adds ``Server:
    Werkzeug/…``: aiohttp's response parser rejects that duplicate in Python's dev mode
    (``-X dev`` or ``PYTHONASYNCIODEBUG``), which would break the proxy and aiobotocore.
    """

    def send_response(self, code: int, message: str | None = None) -> None:
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class MotoServer:
    """moto's server on 127.0.0.1 (a free port unless *port* is given), in a thread.

    The same as moto's ``ThreadedMotoServer`` (moto's WSGI app on werkzeug's threaded
    server), except that it closes its listening socket on ``stop`` and sends one
    ``Server`` header (see :class:`_MotoRequestHandler`).

    ``start`` and ``stop`` block briefly (thread start/join): call them from a sync
    fixture or a thread, not from a coroutine.
    """

    def __init__(self, host: str = _LOOPBACK, port: int = 0) -> None:
        self._host = host
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None

    def start(self) -> None:
        """Bind, and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("MotoServer already started")
        app = DomainDispatcherApplication(create_backend_app)
        server = make_server(
            self._host, self._port, app, threaded=True, request_handler=_MotoRequestHandler
        )
        thread = threading.Thread(
            target=server.serve_forever, name=f"moto-server-{server.port}", daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread
        self._address = (self._host, int(server.port))

    def stop(self) -> None:
        """Stop serving, join the thread and close the listening socket."""
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is None:
            return
        server.shutdown()
        if thread is not None:
            thread.join()
        server.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._address is None:
            raise RuntimeError("MotoServer not started")
        return self._address[1]

    @property
    def endpoint_url(self) -> str:
        """moto's own URL (bypassing any proxy)."""
        host = self._address[0] if self._address else self._host
        return f"http://{host}:{self.port}"

    async def reset(self, session: aiohttp.ClientSession | None = None) -> None:
        """Forget every resource in every moto backend (``POST /moto-api/reset``)."""
        url = f"{self.endpoint_url}/moto-api/reset"
        if session is not None:
            async with session.post(url) as resp:
                resp.raise_for_status()
            return
        async with aiohttp.ClientSession() as own, own.post(url) as resp:
            resp.raise_for_status()


@dataclass
class AcmCall:
    """One request that reached the proxy."""

    operation: str
    """The ``X-Amz-Target`` operation, e.g. ``ImportCertificate`` ('' if absent)."""
    body: dict[str, Any]
    """The request's JSON body as sent (``{}`` if it was empty or not a JSON object)."""
    headers: dict[str, str]
    status: int | None = None
    """The status the client got, once answered."""
    injected: bool = False
    """True if a fault rule answered it (it never reached moto)."""


@dataclass(frozen=True)
class _AcmRequest:
    operation: str


def _aws_json_error(status: int, code: str, message: str) -> CannedResponse:
    body = json.dumps({"__type": code, "message": message}).encode()
    return CannedResponse(
        status=status,
        body=body,
        content_type=_AMZ_JSON,
        headers={"x-amzn-ErrorType": code},
    )


class AcmProxy:
    """A recording, fault-injecting aiohttp reverse proxy on 127.0.0.1 in front of moto.

    ``start``/``stop`` must run on the event loop that will serve the requests.
    """

    def __init__(self, upstream_url: str, host: str = _LOOPBACK, port: int = 0) -> None:
        self.upstream_url = upstream_url.rstrip("/")
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._bound_port: int | None = None
        self.records: list[AcmCall] = []
        """Every request since the last reset, in arrival order (faulted ones too)."""
        self.faults: FaultPlan[_AcmRequest] = FaultPlan()

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("AcmProxy already started")
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self._session.close()
            self._session = None
            raise
        self._runner = runner
        self._bound_port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        session, self._session = self._session, None
        if runner is not None:
            await runner.cleanup()
        if session is not None:
            await session.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def endpoint_url(self) -> str:
        if self._bound_port is None:
            raise RuntimeError("AcmProxy not started")
        return f"http://{self._host}:{self._bound_port}"

    # -- accounting ---------------------------------------------------------------

    def calls(
        self, op: str | None = None, *, include_injected: bool = True
    ) -> list[dict[str, Any]]:
        """The JSON bodies the client sent for operation *op* (every operation if None).

        Requests answered by an injected fault are included unless
        *include_injected* is false: they are still requests the client sent.
        """
        return [
            rec.body
            for rec in self.records
            if (op is None or rec.operation == op) and (include_injected or not rec.injected)
        ]

    def count(self, op: str | None = None, *, include_injected: bool = True) -> int:
        """How many requests for *op* arrived (every operation if None)."""
        return len(self.calls(op, include_injected=include_injected))

    # -- faults -------------------------------------------------------------------

    def fail_next(
        self,
        op: str | None,
        count: int = 1,
        error_code: str = "ThrottlingException",
        status: int = 400,
        message: str = "Rate exceeded",
    ) -> None:
        """Answer the next *count* calls of *op* (any operation if None) with an AWS
        JSON error ``{"__type": error_code, "message": message}`` and *status*."""
        response = _aws_json_error(status, error_code, message)
        self.faults.add(lambda req: op is None or req.operation == op, count, response)

    def reset(self) -> None:
        """Empty the call log and drop pending faults (moto's state is not touched)."""
        self.records.clear()
        self.faults.clear()

    async def reset_backend(self) -> None:
        """Reset moto through this proxy's own session."""
        if self._session is None:
            raise RuntimeError("AcmProxy not started")
        async with self._session.post(f"{self.upstream_url}/moto-api/reset") as resp:
            resp.raise_for_status()

    # -- serving ------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        parsed: dict[str, Any] = {}
        if body:
            try:
                decoded = json.loads(body)
            except ValueError:
                decoded = None
            if isinstance(decoded, dict):
                parsed = decoded
        record = AcmCall(operation=operation, body=parsed, headers=dict(request.headers))
        self.records.append(record)

        canned = self.faults.take(_AcmRequest(operation))
        if canned is not None:
            record.injected = True
            record.status = canned.status
            headers = {"x-amzn-RequestId": str(uuid.uuid4()), **canned.headers}
            return web.Response(
                status=canned.status,
                body=canned.body,
                headers=headers,
                content_type=canned.content_type,
            )

        session = self._session
        if session is None:  # pragma: no cover - only while stopping
            raise web.HTTPServiceUnavailable()
        forward_headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in _NOT_FORWARDED
        }
        async with session.request(
            request.method,
            f"{self.upstream_url}{request.path_qs}",
            headers=forward_headers,
            data=body,
            allow_redirects=False,
        ) as upstream:
            payload = await upstream.read()
            response_headers = {
                name: value
                for name, value in upstream.headers.items()
                if name.lower() not in _NOT_FORWARDED
            }
            record.status = upstream.status
        return web.Response(status=upstream.status, body=payload, headers=response_headers)


@dataclass
class AcmHandle:
    """What the ``acm`` fixture gives a test: one region of a fresh, empty ACM."""

    proxy: AcmProxy
    moto: MotoServer
    region: str = DEFAULT_REGION
    access_key_id: str = ACCESS_KEY_ID
    secret_access_key: str = SECRET_ACCESS_KEY

    @property
    def endpoint_url(self) -> str:
        """The proxy's URL: point the code under test here."""
        return self.proxy.endpoint_url

    @property
    def credentials(self) -> dict[str, str]:
        return {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
        }

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``session.create_client("acm", **kwargs)``."""
        return {"region_name": self.region, "endpoint_url": self.endpoint_url, **self.credentials}

    @asynccontextmanager
    async def client(self, *, config: Any = None, direct: bool = False) -> AsyncIterator[Any]:
        """An ``aiobotocore`` ACM client pointed at the proxy (at moto if *direct*).

        botocore's own retries are off by default (one attempt per call) so that a test
        sees every injected fault; pass an ``AioConfig`` as *config* to change that.
        """
        if config is None:
            config = AioConfig(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
            )
        kwargs = self.client_kwargs()
        if direct:
            kwargs["endpoint_url"] = self.moto.endpoint_url
        session = AioSession()
        async with session.create_client("acm", config=config, **kwargs) as client:
            yield client

    async def reset(self) -> None:
        """Empty moto (every backend) and the proxy's call log and faults."""
        self.proxy.reset()
        await self.proxy.reset_backend()


# -- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's server on 127.0.0.1, one per test session."""
    with MotoServer() as server:
        yield server


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def acm_proxy(moto_server: MotoServer) -> AsyncIterator[AcmProxy]:
    """The recording, fault-injecting proxy in front of ``moto_server``."""
    async with AcmProxy(moto_server.endpoint_url) as proxy:
        yield proxy


@pytest_asyncio.fixture(loop_scope="session")
async def acm(
    moto_server: MotoServer,
    acm_proxy: AcmProxy,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[AcmHandle]:
    """An empty ACM (moto reset, proxy log and faults cleared) for one test."""
    missing = tmp_path / "no-aws-config"
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(missing / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(missing / "credentials"))
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", DEFAULT_REGION)
    handle = AcmHandle(proxy=acm_proxy, moto=moto_server)
    await handle.reset()
    yield handle
    acm_proxy.faults.clear()
