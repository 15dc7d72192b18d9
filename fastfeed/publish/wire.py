"""NATS publishes built as protocol bytes, many per write.

nats-py's ``publish`` encodes a header dict per call (a regex and a translate per header) and
queues one command per message; at the publisher's rate that was half the CPU. Here headers are
built from per-stream pieces made once, each message becomes one ``HPUB`` command (NATS client
protocol: ``HPUB <subject> <reply> <#header bytes> <#total bytes>␍␊<headers><payload>␍␊``,
docs.nats.io "Client Protocol"), and a batch of them is handed to the connection as one write.

That hand-over uses two internals of nats-py (``Client._send_command`` and ``_flush_pending``,
as its own ``publish`` does), which is why nats-py is pinned; the publish tests fail if they
change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nats.aio.client import Client

__all__ = ["HEADER_LINE", "header_block", "hpub", "write"]

HEADER_LINE = b"NATS/1.0\r\n"


def header_block(fixed: bytes, fields: bytes) -> bytes:
    """The header section: version line, the stream's ``fixed`` lines, per-message ``fields``.

    Both are ``Name: value\\r\\n`` lines; the values must not hold CR or LF (ours are escaped
    tokens and decimal numbers).
    """
    return b"%b%b%b\r\n" % (HEADER_LINE, fixed, fields)


def hpub(subject: bytes, reply: bytes, headers: bytes, payload: bytes) -> bytes:
    """One ``HPUB`` command."""
    size = len(headers)
    return b"HPUB %b %b %d %d\r\n%b%b\r\n" % (
        subject,
        reply,
        size,
        size + len(payload),
        headers,
        payload,
    )


async def write(nc: Client, data: bytes) -> None:
    """Queue ``data`` (whole commands) on the connection and wake its flusher."""
    await nc._send_command(data)
    await nc._flush_pending()
