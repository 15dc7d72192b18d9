"""Sans-I/O derivation: journal records in, actions and SQLite rows out (streams, sequence, gaps).

No module here imports asyncio, sqlite3, threads, sockets, the clock or the Cython journal.
"""
