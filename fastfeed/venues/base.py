"""What every venue adapter provides: the one shape the pipeline and the recorder rely on.

Each venue is one module, ``fastfeed/venues/<venue>.py``, with an adapter class satisfying
``VenueAdapter`` (sans-I/O: bytes in, events out, commands built as bytes; no sockets, no clock)
and a C scanner ``scan_<venue>.h`` for the recorder's hot path (contract in ``scan.h``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from fastfeed.venues.events import Event

__all__ = ["VenueAdapter"]


class VenueAdapter(Protocol):
    """A venue's protocol: parse frames into events and build the commands to send."""

    name: str

    def parse(self, frame: bytes | memoryview, recv_ns: int, *, binary: bool = False) -> Event:
        """Turn one frame into an event; never raises (unreadable input is ``Malformed``)."""
        ...

    def subscribe(
        self, channel: str, symbols: Sequence[str], resume: Mapping[str, int] | None = None
    ) -> bytes:
        """The subscribe command; ``resume`` maps a symbol to the next seq wanted, if supported."""
        ...

    def unsubscribe(self, channel: str, symbols: Sequence[str]) -> bytes:
        """The unsubscribe command."""
        ...

    def ping(self) -> bytes | None:
        """The application-level heartbeat (None: the venue has none, WebSocket pings only)."""
        ...

    def url(self, endpoint: str, api_key: str | None) -> str:
        """The URL to connect to (with credentials, never logged)."""
        ...

    def redacted_url(self, endpoint: str) -> str:
        """The URL as ``url`` builds it, safe to log."""
        ...
