"""What OKX, Bybit, Coinbase and Kraken share: public feeds that resync in-stream.

None of them replays and none needs a REST snapshot: a resubscribe makes the venue send the
book again, so a gap's recovery is a command on the same connection. Their feeds are public
(no key), and the URL is the venue's path under the base the operator may replace.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable

from fastfeed import defaults
from fastfeed.venues.events import Event, Malformed, Message
from fastfeed.venues.jsonfields import base_url

__all__ = ["InStreamVenue", "Step"]

MAX_SYMBOL_LEN = 40  # OKX instIds of options run to about 30 characters
_SYMBOL_RE = re.compile(r"[A-Za-z0-9_/-]+")  # BTC-USDT, BTCUSDT, BTC-USD, BTC/USD


class Step(enum.StrEnum):
    """What a sequenced message does to its stream's chain of ids (the venue's rule)."""

    UPDATE = "update"  # covers first_seq..seq (or seq alone): continues, jumps or fills
    SNAPSHOT = "snapshot"  # the whole book as of seq, sent in the feed: the chain restarts
    RESET = "reset"  # the venue numbers the stream anew from seq: not a loss, a new epoch
    KEEPALIVE = "keepalive"  # an idle heartbeat in the stream: no id of its own


class InStreamVenue:
    """Base of the in-stream resyncing adapters: snapshots, URLs."""

    name: str
    replays = False  # no replay: a gap is resynced by resubscribing (a new snapshot in-stream)
    rest_snapshots = False
    rotates = False  # none of them closes connections on a schedule
    rejection_hint = "check the channel and symbol names"  # public feeds: no key to refuse
    default_endpoint: str  # scheme, host and port of the public feed
    ws_path: str  # the path under it
    channels: tuple[str, ...]  # canonical channel names, for error text
    max_streams = defaults.INSTREAM_STREAMS_PER_CONNECTION
    max_args_per_command = defaults.INSTREAM_SUBSCRIBE_BATCH  # venues with a lower limit override
    commands_per_s = 3  # commands per second per connection (kept under the venue's rate)
    commands_per_hour: int | None = None  # subscribes + unsubscribes per hour per connection
    numbers_connections = False  # one sequence per connection, not per stream (Coinbase)

    def channels_help(self) -> str:
        """The channels accepted, for error text."""
        return ", ".join((*self.channels, "depth", "trade"))

    def symbol_problem(self, symbol: str) -> str | None:
        """What is wrong with a symbol as given on the command line, None if fine."""
        if not symbol:
            return "empty symbol"
        if len(symbol) > MAX_SYMBOL_LEN:
            return f"longer than {MAX_SYMBOL_LEN} characters"
        if _SYMBOL_RE.fullmatch(symbol) is None:
            return "expected only letters, digits, _, - and /"
        return None

    def has_snapshots(self, channel: str) -> bool:
        """No REST snapshots: a resubscribe re-sends the book in the feed."""
        return False

    def default_ws_base(self) -> str:
        """The venue's WebSocket base URL."""
        return self.default_endpoint

    def step(self, msg: Message) -> Step:
        """What a sequenced message of this venue does to its chain (venues override)."""
        return Step.UPDATE

    def connection_seq(self) -> int | None:
        """The connection-wide number of the frame ``parse`` read last, for a venue that
        numbers every message of a connection rather than each stream (Coinbase); else None."""
        return None

    def checked_channel(self, channel: str) -> bool:
        """Whether the channel's pushes are checked by content (``checked_books``)."""
        return False

    def checked_books(self) -> Callable[[str], int] | None:
        """For a venue without ids whose books are checked by content (Kraken's checksum):
        the depth each symbol's book is kept at; None for the others."""
        return None

    def sent(self, payload: bytes) -> None:
        """A command sent on a connection, as journaled: venues whose pushes are read by what
        was asked (Kraken's book depth) learn it here; the others need nothing."""

    def opening_commands(self) -> list[bytes]:
        """What every connection sends before its subscriptions (venues override)."""
        return []

    def parse_snapshot(self, channel: str, symbol: str, body: bytes) -> Event:
        """No REST snapshots here: the resubscribe re-sends the book in-stream."""
        return Malformed(f"{self.name} takes no REST snapshots: a resubscribe re-sends the book")

    def url(self, endpoint: str, api_key: str | None) -> str:
        """The public feed under a base ``ws[s]://host[:port]`` (no key: public data)."""
        return base_url(endpoint, self.default_endpoint, self.ws_path)

    def redacted_url(self, endpoint: str) -> str:
        """The URL as ``url`` builds it: it never holds a secret."""
        return self.url(endpoint, None)
