"""What OKX, Bybit, Coinbase and Kraken share: public feeds that resync in-stream.

None of them replays and none needs a REST snapshot: a resubscribe makes the venue send the
book again, so a gap's recovery is a command on the same connection. Their feeds are public
(no key), and the URL is the venue's path under the base the operator may replace.
"""

from __future__ import annotations

from fastfeed.venues.events import Event, Malformed
from fastfeed.venues.jsonfields import base_url

__all__ = ["InStreamVenue"]


class InStreamVenue:
    """Base of the in-stream resyncing adapters: snapshots, URLs."""

    name: str
    replays = False  # no replay: a gap is resynced by resubscribing (a new snapshot in-stream)
    default_endpoint: str  # scheme, host and port of the public feed
    ws_path: str  # the path under it

    def parse_snapshot(self, channel: str, symbol: str, body: bytes) -> Event:
        """No REST snapshots here: the resubscribe re-sends the book in-stream."""
        return Malformed(f"{self.name} takes no REST snapshots: a resubscribe re-sends the book")

    def url(self, endpoint: str, api_key: str | None) -> str:
        """The public feed under a base ``ws[s]://host[:port]`` (no key: public data)."""
        return base_url(endpoint, self.default_endpoint, self.ws_path)

    def redacted_url(self, endpoint: str) -> str:
        """The URL as ``url`` builds it: it never holds a secret."""
        return self.url(endpoint, None)
