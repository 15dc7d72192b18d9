"""What every venue adapter provides: the one shape the pipeline and the recorder rely on.

Each venue is one module, ``fastfeed/venues/<venue>.py``, with an adapter class satisfying
``VenueAdapter`` (sans-I/O: bytes in, events out, commands built as bytes; no sockets, no clock)
and a C scanner ``scan_<venue>.h`` for the recorder's hot path (contract in ``scan.h``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from fastfeed.venues.events import Event

__all__ = ["ShardVenue", "SnapshotVenue", "VenueAdapter"]


class VenueAdapter(Protocol):
    """A venue's protocol: parse frames into events and build the commands to send.

    ``replays``: a gap is backfilled by re-subscribing with ``resume`` (TickDB's sequence
    extension); otherwise the venue cannot replay and the adapter is a ``SnapshotVenue``.
    ``book_channels``: channels whose messages each hold a full book (kept as book rows).
    ``rejection_hint``: what the operator should check when the venue refuses for good.
    """

    name: str
    replays: bool
    book_channels: frozenset[str]
    rejection_hint: str

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

    def parse_snapshot(self, channel: str, symbol: str, body: bytes) -> Event:
        """Turn a REST snapshot body into a ``Snapshot``; never raises."""
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


class ShardVenue(VenueAdapter, Protocol):
    """A venue that cannot replay: streams are split across connections, and a gap is
    recovered by the venue's snapshot (REST for a ``SnapshotVenue``; otherwise a resubscribe
    makes the venue send it in the feed).

    ``rest_snapshots``: it is a ``SnapshotVenue``. ``rotates``: the venue closes connections
    on a schedule, so each is replaced before (make before break).
    """

    rest_snapshots: bool
    rotates: bool

    def channel(self, name: str) -> str | None:
        """The canonical channel for a command-line name, None if unknown."""
        ...

    def channels_help(self) -> str:
        """The channels accepted, for error text."""
        ...

    def symbol_problem(self, symbol: str) -> str | None:
        """What is wrong with a symbol as given on the command line, None if fine."""
        ...

    def sequenced(self, channel: str) -> bool:
        """Whether the channel's pushes carry ids checked for continuity."""
        ...

    def has_snapshots(self, channel: str) -> bool:
        """Whether a REST snapshot resyncs the channel."""
        ...

    def default_ws_base(self) -> str:
        """The venue's WebSocket base URL."""
        ...

    def opening_commands(self) -> list[bytes]:
        """What every connection sends before its subscriptions."""
        ...

    @property
    def max_streams(self) -> int:
        """Streams one connection may carry."""
        ...

    @property
    def max_args_per_command(self) -> int:
        """Streams one subscribe command may carry."""
        ...

    @property
    def commands_per_s(self) -> int:
        """Commands the venue accepts per second per connection."""
        ...

    @property
    def commands_per_hour(self) -> int | None:
        """Subscribes and unsubscribes the venue accepts per hour per connection (None: no
        such budget)."""
        ...


class SnapshotVenue(ShardVenue, Protocol):
    """A venue whose gaps are resynced with REST snapshots; connections are rotated before the
    venue closes them."""

    weight_header: str  # response header with the request weight used (lower case)

    def snapshot_target(self, symbol: str, limit: int) -> str:
        """Path and query of a snapshot request."""
        ...

    def snapshot_weight(self, limit: int) -> int:
        """The request weight of one snapshot."""
        ...

    def default_rest_base(self) -> str:
        """The venue's REST base URL."""
        ...

    @property
    def weight_per_minute(self) -> int:
        """REST request weight allowed per minute."""
        ...
