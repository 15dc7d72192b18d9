"""A minimal HTTP/1.1 server on loopback (h11 over asyncio streams) for fixture venues' REST.

One handler maps a request target to a response; keep-alive is honoured, bodies are sent with
Content-Length. Only GET is served: fixture venues answer snapshot requests, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import h11

__all__ = ["Response", "RestServer"]

READ_BYTES = 65536


@dataclass
class Response:
    """What the handler answers: status, body, extra headers."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


class RestServer:
    """Serves ``handler(target)`` on 127.0.0.1; ``start`` returns the base URL."""

    def __init__(self, handler: Callable[[str], Response]) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests = 0

    async def start(self) -> str:
        """Bind any free port; returns ``http://127.0.0.1:PORT``."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        """Stop listening and end every connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)  # owned here: close() cancels and awaits it
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(READ_BYTES))
                    continue
                if isinstance(event, h11.Request):
                    self.requests += 1
                    reply = self._handler(event.target.decode("latin-1"))
                    headers = [
                        ("Content-Type", "application/json;charset=UTF-8"),
                        ("Content-Length", str(len(reply.body))),
                        *reply.headers,
                    ]
                    writer.write(conn.send(h11.Response(status_code=reply.status, headers=headers)))
                    writer.write(conn.send(h11.Data(data=reply.body)))
                    writer.write(conn.send(h11.EndOfMessage()))
                    await writer.drain()
                elif isinstance(event, h11.EndOfMessage):
                    if conn.our_state is h11.MUST_CLOSE:
                        break
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    break
        except (h11.RemoteProtocolError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
