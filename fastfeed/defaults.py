"""Every tunable default in one place, with its unit and the reason for its value."""

MiB = 1024 * 1024

# --- journal -------------------------------------------------------------------------------
SEGMENT_BYTES = 64 * MiB  # large enough that segment rollover is rare; small enough to recycle
GROUP_COMMIT_MS = 2.0  # bound on the power-loss window in group mode
GROUP_COMMIT_BYTES = 1 * MiB  # flush early when this much is unsynced: bounds one msync's cost
MIN_FREE_BYTES = 256 * MiB  # refuse to create a segment when the disk has less than this free
RETENTION_BYTES = 1024 * MiB  # journal kept even when fully snapshotted (for repair/verify)
MAX_FRAME_BYTES = 16 * MiB  # a frame larger than this is refused by the WebSocket layer
MAX_PENDING_OUTBOUND_BYTES = 4 * MiB  # unsent commands past this: the venue stopped reading
RECV_BUFFER_BYTES = 256 * 1024  # socket receive buffer: bounds one read, so one loop turn
MAX_STREAMS_PER_CONNECTION = 1000  # (channel, symbol) pairs on one socket: bounds resync bursts

# --- recorder -------------------------------------------------------------------------------
DATA_DIR = "fastfeed-data"  # relative to the working directory when --data-dir is not given
API_KEY_ENV = "TICKDB_API_KEY"  # where the TickDB key comes from (a flag would show in ps)
BACKOFF_INITIAL_S = 1.0  # first reconnect delay (full jitter below it)
BACKOFF_CAP_S = 60.0  # reconnect delay never exceeds this
# After a productive connection (subscribed, delivered data) ends: reconnect at once, but
# spread over this window so a fleet that lost the venue together does not stampede it.
RECONNECT_AFTER_DATA_S = (0.1, 0.5)
# Connections in a row that may end on a frame over MAX_FRAME_BYTES and still reconnect at once
# (finding its stream takes ~2 + log2(streams): 12 for 1000); past it, a venue that sends one
# every time gets the backoff, not a reconnect twice a second.
OVERSIZED_PROMPT_RECONNECTS = 16
PING_INTERVAL_S = 5.0  # app-level {"cmd":"ping"} cadence
STALL_TIMEOUT_S = 10.0  # no frame at all for this long: drop and reconnect
RESYNC_RETRY_S = 1.0  # ask again for a gapped stream after this long (acks can be refused or lost)
RESYNC_MIN_INTERVAL_S = 0.1  # at most 10 resync commands/s: venues rate-limit (TickDB code 3001)
SNAPSHOT_INTERVAL_S = 1.0  # journal -> SQLite cadence when nothing asks for it sooner
# Journal records derived into rows per SQLite transaction: bounds the rows held in memory and
# the event loop's time per batch (~1 us a record: ~20 ms), however far SQLite is behind.
APPLY_BATCH_RECORDS = 20_000
# Derived per turn of the event loop (~1 ms at ~2 us a record): a socket read waits behind at
# most one chunk (2,000 records made send -> callback p99 4 ms at 10k msgs/s; 500: 1 ms).
DERIVE_CHUNK_RECORDS = 500
# How soon a thread waiting for the GIL gets it from a busy one (Python's default: 5 ms). The
# commit thread publishing durability, the applier's SQLite thread and the event loop hand it
# over constantly: at 5 ms a group commit's p99 was the switch interval, not the disk.
GIL_SWITCH_INTERVAL_S = 0.0005
# While the feed bursts, deriving on the loop would halve what the frame sink can take in: the
# live applier holds off (the journal holds the lag) while records arrive faster than
# DERIVE_DEFER_RATE, for at most DERIVE_DEFER_MAX_S and DERIVE_DEFER_MAX_RECORDS (half of
# HEALTH_MAX_SNAPSHOT_LAG), then derives until caught up before it holds off again: under a
# sustained fast feed SQLite's lag rises and falls within those bounds. Checked every
# DERIVE_DEFER_CHECK_S while holding off.
HEALTH_MAX_SNAPSHOT_LAG = 1_000_000  # records journaled but not in SQLite before /healthz fails:
# ~10 s behind at 100k msg/s, while a healthy recorder stays within one SNAPSHOT_INTERVAL_S
DERIVE_DEFER_RATE = 100_000  # records/s
DERIVE_DEFER_MAX_S = 1.0
DERIVE_DEFER_MAX_RECORDS = HEALTH_MAX_SNAPSHOT_LAG // 2
DERIVE_DEFER_CHECK_S = 0.02
SQLITE_CACHE_KIB = 64 * 1024  # the writer's page cache: the seq index of ~1,000 streams stays in it
# Messages per INSERT statement: Python's sqlite3 releases the GIL around each statement step,
# so one step per 100 rows rather than per row lets the frame path run while SQLite inserts
# (and costs ~30 % less CPU a row). 900 parameters: under the oldest SQLite limit (999).
SQLITE_ROWS_PER_INSERT = 100
SQLITE_ABORT_CHECK_OPCODES = 10_000  # SQLite VM steps between checks for a shutdown abort
LOCK_WAIT_S = 5.0  # how long start-up waits for the journal lock (a recorder still stopping)
LOCK_POLL_S = 0.05  # re-try interval while waiting for the journal lock
SHUTDOWN_TIMEOUT_S = 10.0  # graceful shutdown bound after SIGTERM/SIGINT
CLOSE_TIMEOUT_S = 2.0  # at shutdown, a venue silent on our close frame this long is aborted
STATUS_INTERVAL_S = 1.0  # terminal status line refresh
LOG_STATUS_INTERVAL_S = 10.0  # status log line cadence when not on a terminal
MALFORMED_LOG_PER_MIN = 10  # rate limit for malformed-frame log lines
# A push this many seqs below its stream's previous push is a venue restart (seqs from 1
# again), not a duplicate or a reorder: those step back by a few frames at most.
SEQ_RESET_BACKWARDS = 1000  # seqs

# --- venues without replay (Binance): snapshots, rotation, limits -------------------------
SNAPSHOT_LEVELS = 1000  # depth snapshot size: Binance's local-book guide asks for 1000
SNAPSHOT_CONCURRENCY = 4  # REST snapshot requests in flight at once
REST_WEIGHT_BUDGET = 0.5  # share of the venue's per-minute request weight snapshots may use
REST_TIMEOUT_S = 10.0  # one snapshot request, connect to last byte (1000 levels: ~40 KB)
SNAPSHOT_RETRY_S = 2.0  # ask again after a failed snapshot (network, 5xx)
REORDER_GRACE_S = 0.5  # a gap waits this long for a late (reordered) push before recovery
ROTATE_AFTER_S = 23 * 3600.0  # replace a connection before the venue's 24 h close
ROTATION_TIMEOUT_S = 30.0  # the old connection closes by then even if the new one is not proven
SUBSCRIBE_BATCH = 200  # streams per SUBSCRIBE command (1024 streams: 6 commands)

# --- venues that resync in the feed (OKX, Bybit, Coinbase, Kraken) -------------------------
INSTREAM_STREAMS_PER_CONNECTION = 100  # a seq jump resubscribes at most this many at once
INSTREAM_SUBSCRIBE_BATCH = 64  # streams per subscribe command (OKX: args far below 64 KiB)

# --- operations: metrics, health, tail ------------------------------------------------------
METRICS_HOST = "127.0.0.1"  # `--metrics PORT` binds loopback: the endpoint has no authentication
HEALTH_MAX_DATA_SILENCE_S = 60.0  # connected and subscribed, yet no market data this long:
# /healthz fails (a reload that dropped every stream, a venue that only answers pings)
COMMIT_LATENCY_BUCKETS_S = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 0.5, 2.0)
# ... group-commit sync time histogram bounds, seconds: msync of a few pages to a slow disk
HTTP_REQUEST_TIMEOUT_S = 5.0  # metrics server: a scraper must send its request head this fast
HTTP_MAX_HEAD_BYTES = 8192  # metrics server: a longer request head is refused (400)
TAIL_POLL_S = 0.05  # `fastfeed tail` re-reads the journal end this often: lag nobody notices

# --- export, tail, replay -----------------------------------------------------------------------
EXPORT_CHUNK_ROWS = 4096  # rows per write (text formats): few syscalls, little memory
EXPORT_ROW_GROUP_ROWS = 65_536  # rows per Parquet row group: the unit of memory and of later reads
PROGRESS_INTERVAL_S = 0.2  # progress bar redraw period: smooth enough to read, cheap to ignore
TAIL_CUT_EVERY_RECORDS = 1024  # `tail` prints in chunks this size while catching up (bounds memory)
REPLAY_AHEAD_ROWS = 4096  # (seq, recv_ns) pairs replay reads ahead per stream to decide what is due
REPLAY_BATCH_RECORDS = 50_000  # start-up catch-up: one SQLite transaction per this many records
VIEW_PENDING_BYTES = 256 * MiB  # export derives at most this much un-snapshotted journal in memory

# --- simulator -------------------------------------------------------------------------------
SIM_RATE_PER_STREAM = 200.0  # msgs/s per stream: "a few hundred" like a busy equity
SIM_HISTORY_MESSAGES = 1_000_000  # per stream, for resume
SIM_HISTORY_BYTES = 256 * MiB  # memory cap on all history kept by the simulator
SIM_DEPTH_LEVELS = 5  # top-N book levels per depth push
SIM_MAX_CLIENT_BUFFER = 64 * MiB  # a slower client than this is dropped, not buffered forever
SIM_SEED = 1  # content seed: (seed, channel, symbol, seq) fixes every byte
SIM_HOST = "127.0.0.1"  # loopback unless asked: the simulator has no real authentication
SIM_PORT = 8765  # standalone `fastfeed sim` port when --port is not given
SIM_TICK_S = 0.002  # publisher wake-up period; each tick publishes every message that fell due
SIM_EPOCH_MS = 1_732_406_400_000  # content clock origin (2024-11-24 UTC): push timestamps are
SIM_TIMESTAMP_STEP_MS = 5  # ... epoch + seq * step, never the wall clock, so replays are identical
SIM_WRITE_CHUNK_BYTES = 256 * 1024  # pre-framed bytes per transport write (replay and burst)
SIM_WRITE_HIGH_WATER = 1 * MiB  # transport buffer above which the server stops writing
SIM_BURST_BATCH = 512  # messages generated per stream per step in burst mode
SIM_BURST_CHUNKS_PER_TURN = 16  # burst: chunks written per wake-up unless the socket pauses
SIM_COMMANDS_PER_S = 50  # client commands per second per connection before error 3001
SIM_SLOW_CLOSE_GRACE_S = 1.0  # after the slow-reader close frame, abort if still connected

# --- publish (NATS JetStream): docs/scale-out.md --------------------------------------------
PUBLISH_SUBJECT_PREFIX = "md"  # subjects md.<venue>.<channel>.<symbol>
PUBLISH_WINDOW = 8192  # publishes awaiting their ack: ~160 ms of 50k msgs/s hides the round trip
# (at least PUBLISH_BATCH_FLOW: a window below one flow ack would wait for an ack never sent)
PUBLISH_BATCH_FLOW = 500  # fast-ingest batch: one ack per this many messages asked for (the most
# nats-server grants: fastBatchInit in its jetstream_batching.go); it may grant fewer
PUBLISH_BATCH_ACKS_AHEAD = 4  # flow acks outstanding before sending waits, within PUBLISH_WINDOW
# (ADR-50 advises 2-3 where many publishers share a stream; 4 was a little ahead of 2 and 16)
PUBLISH_BATCH_MESSAGES = 65_536  # a batch commits after this many: its PubAck gives the stream
# seq the cursor's floor needs, so reconcile after a crash reads at most about this many ids
PUBLISH_CHUNK_RECORDS = 2048  # journal records per pipeline cut: the cursor's step
PUBLISH_WRITE_BATCH = 256  # HPUB commands joined into one write to the connection (~64 KiB)
PUBLISH_ACK_TIMEOUT_S = 5.0  # no ack this long: send again, same Msg-Id (the server dedups);
# ... as long as a leader election, when acks cannot come anyway (errors are re-sent sooner)
PUBLISH_ACK_LATENCY_DECAY = 0.99  # per PUBLISH_CURSOR_INTERVAL_S: a slow spell fades in ~30 s
PUBLISH_BACKOFF_INITIAL_S = 0.05  # first pause after a 503 / "in process" answer
PUBLISH_BACKOFF_CAP_S = 2.0  # ... doubling to this while errors continue (a Raft election: 5-7 s)
PUBLISH_POLL_S = 0.005  # journal re-read period when caught up: well below GROUP_COMMIT_MS * 5
PUBLISH_CURSOR_INTERVAL_S = 0.05  # at most this often an fsynced cursor write (20/s)
PUBLISH_CONNECT_TIMEOUT_S = 5.0  # NATS connect / JetStream API request bound
PUBLISH_API_RETRY_S = 15.0  # stream info asked again this long while there is no leader (503)
PUBLISH_RECONCILE_IDLE_S = 5.0  # reconcile read: no message this long from the stream is an error
PUBLISH_DUPLICATE_WINDOW_S = 600.0  # --create-stream duplicate_window: covers a standby's lag
PUBLISH_REPLICAS = 3  # --create-stream replicas: survives one node lost, a majority still elects
PUBLISH_HEALTH_MAX_LAG_S = 30.0  # /healthz fails when not caught up with the journal this long
PUBLISH_DRAIN_TIMEOUT_S = 5.0  # at SIGTERM, wait this long for acks before the final cursor
EXPORT_NATS_REORDER = PUBLISH_WINDOW  # export --from-nats reorder buffer per subject (messages)
