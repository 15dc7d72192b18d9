"""``fastfeed publish``: every durable journal message into NATS JetStream, exactly once.

The collector's journal stays the truth; a publisher process follows it lock-free and publishes
each message with a ``Nats-Msg-Id`` derived from the message itself, keeps a durable cursor, and
reconciles against the stream on start. Modules: ``subjects`` (names, ids, headers: no I/O),
``follower`` (durable journal records to outgoing messages), ``cursor`` (the fsynced position and
the retention floor it feeds), ``publisher`` (the JetStream window), ``app`` (the command),
``nats_export`` (``export --from-nats``). Design and failure table: docs/scale-out.md.
"""
