"""A small TCP proxy on 127.0.0.1 that can play a dead network path, for watch tests.

It forwards bytes both ways, unchanged (TLS passes through, so a client still verifies
the server's certificate), between each accepted connection and a new connection to
the target. Three switches:

* :meth:`TcpProxy.freeze`: connections stay open but nothing is forwarded either way,
  like a network path that silently dropped out (no FIN, no RST). Bytes that arrive
  meanwhile wait in the proxy and the kernel buffers; new connections are accepted and
  wait too.
* :meth:`TcpProxy.thaw`: forwarding resumes, including what waited (the path healed).
* :meth:`TcpProxy.cut`: every open connection is closed at once, like a restarted load
  balancer; new connections are accepted as usual.

Every task (one per direction of each connection) is owned by the proxy, and
:meth:`TcpProxy.stop` cancels and awaits all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType

__all__ = ["TcpProxy"]

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port``; freeze, thaw, cut."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        """The port the proxy listens on (set by :meth:`start`)."""
        self.accepted = 0
        """How many client connections were accepted so far."""
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    @property
    def frozen(self) -> bool:
        return not self._flowing.is_set()

    async def start(self) -> TcpProxy:
        if self._server is not None:
            raise RuntimeError("the proxy is already started")
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening, close every connection, await every task."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._flowing.set()
        await self._close_all()

    def freeze(self) -> None:
        """Keep connections open but forward nothing (a silent dead path)."""
        self._flowing.clear()

    def thaw(self) -> None:
        """Forward again, including the bytes that waited."""
        self._flowing.set()

    async def cut(self) -> None:
        """Close every open connection now (both sides see the connection end)."""
        await self._close_all()

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ internals
    async def _close_all(self) -> None:
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback, so asyncio starts no task of its own: the proxy owns this one.
        self.accepted += 1
        task = asyncio.create_task(self._serve(reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _serve(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        writers = [client_writer]
        ended_cleanly = False
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
            writers.append(upstream_writer)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pump(client_reader, upstream_writer))
                group.create_task(self._pump(upstream_reader, client_writer))
            ended_cleanly = True
        except* Exception as errors:  # a reset or refused peer ends this connection only
            logger.debug("proxy connection ended: %r", errors.exceptions)
        finally:
            for writer in writers:
                if ended_cleanly:
                    writer.close()
                else:
                    # Cut or broken: drop it at once (no lingering flush), like a dead path.
                    writer.transport.abort()
            if ended_cleanly:
                for writer in writers:
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction until EOF; then half-close and wait for the other side."""
        while True:
            await self._flowing.wait()
            chunk = await reader.read(_CHUNK)
            await self._flowing.wait()  # froze while this read was waiting: hold the bytes
            if not chunk:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()
