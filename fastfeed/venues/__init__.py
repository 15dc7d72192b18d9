"""Venue adapters: sans-I/O protocol code, bytes in and events out (no sockets, no clock)."""

__all__: list[str] = []
