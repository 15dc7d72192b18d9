"""The recorder's hot path: journal each frame straight from picows' buffer, then scan it in C.

``FrameSink.on_ws_frame`` appends a data frame's payload to the journal from the memory picows
read it into (no ``bytes`` per frame; that memory is only valid during the callback), then runs
the venue's C scanner (``fastfeed/venues/scan.h``). A frame of a stream the sink knows whose
sequence number continues it needs nothing more: no Python call. Any other frame (first of a
stream, a jump, a duplicate, an ack, an error, a pong, anything the scanner declines) is copied
and handed to the Python handler once the socket read it came in has been journaled (and, with
``--fsync always``, synced once for the whole read: by the journal's commit thread, while the
loop takes in the next read). What a frame *means* is decided later, in
batches, by the venue adapter and the sequence tracker reading the journal
(fastfeed/derive/pipeline.py): the sink only decides whether Python must look at it now.
While ``divert`` is set, data frames go to Python unjournaled and Python journals them itself.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcmp, memcpy

from picows.picows cimport WSFrame, WSListener, WSMsgType, WSTransport

from fastfeed.journal._wal cimport WalWriter

from functools import partial

from fastfeed.defaults import MAX_FRAME_BYTES
from fastfeed.errors import JournalError

__all__ = ["AcceptTimes", "FrameSink", "Scanner", "StreamTable", "scanner_venues"]


cdef extern from "../venues/scan.h":
    ctypedef struct ff_scan_t:
        const char *key1
        size_t key1_len
        const char *key2
        size_t key2_len
        int64_t first
        int64_t last
        int64_t prev
    int FF_SCAN_DATA


# One block per venue header, one entry per venue name (``VenueAdapter.name``) below.
cdef extern from "../venues/scan_tickdb.h":
    int ff_scan_tickdb(const char *buf, size_t n, ff_scan_t *out) noexcept nogil

cdef extern from "../venues/scan_binance.h":
    int ff_scan_binance(const char *buf, size_t n, ff_scan_t *out) noexcept nogil
    int ff_scan_binance_futures(const char *buf, size_t n, ff_scan_t *out) noexcept nogil

cdef extern from "../venues/scan_okx.h":
    int ff_scan_okx(const char *buf, size_t n, ff_scan_t *out) noexcept nogil

cdef extern from "../venues/scan_bybit.h":
    int ff_scan_bybit(const char *buf, size_t n, ff_scan_t *out) noexcept nogil

cdef extern from "../venues/scan_coinbase.h":
    int ff_scan_coinbase(const char *buf, size_t n, ff_scan_t *out) noexcept nogil

cdef extern from "../venues/scan_kraken.h":
    int ff_scan_kraken(const char *buf, size_t n, ff_scan_t *out) noexcept nogil

ctypedef int (*scan_fn)(const char *, size_t, ff_scan_t *) noexcept nogil

cdef dict _SCANNERS = {
    "tickdb": 0, "binance": 1, "binance-futures": 2, "okx": 3, "bybit": 4, "bybit-linear": 4,
    "coinbase": 5, "kraken": 6,
}
cdef scan_fn _SCAN_FNS[7]
_SCAN_FNS[0] = ff_scan_tickdb
_SCAN_FNS[1] = ff_scan_binance
_SCAN_FNS[2] = ff_scan_binance_futures
_SCAN_FNS[3] = ff_scan_okx
_SCAN_FNS[4] = ff_scan_bybit
_SCAN_FNS[5] = ff_scan_coinbase
_SCAN_FNS[6] = ff_scan_kraken


cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec *ts)
    int CLOCK_REALTIME


cdef inline int64_t _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


def scanner_venues():
    """Venue names (``VenueAdapter.name``) that have a C scanner."""
    return sorted(_SCANNERS)


cdef enum:
    _KEY_MAX = 120  # a stream key is key1, a zero byte, key2: longer ones go to Python
    _SLOTS = 4096   # table slots: a power of two, > 2x the most streams it holds (short probes)


cdef inline Py_ssize_t _make_key(const ff_scan_t *sc, char *out) noexcept nogil:
    """Write the table key of a scan into ``out``; its length, or -1 if it is too long."""
    cdef size_t n = sc.key1_len + 1 + sc.key2_len
    if n > _KEY_MAX:
        return -1
    memcpy(out, sc.key1, sc.key1_len)
    out[sc.key1_len] = 0
    if sc.key2_len:
        memcpy(out + sc.key1_len + 1, sc.key2, sc.key2_len)
    return <Py_ssize_t>n


cdef class Scanner:
    """One venue's C scanner, callable from Python (the pipeline's batch path and the tests)."""

    cdef scan_fn fn
    cdef readonly str venue

    def __init__(self, str venue):
        if venue not in _SCANNERS:
            raise ValueError(f"no C scanner for venue {venue!r}")
        self.venue = venue
        self.fn = _SCAN_FNS[<int>_SCANNERS[venue]]

    def spans(self, payload):
        """(key1, key2, first, last, prev) of a data frame, or None when the scanner declines."""
        cdef Py_buffer view
        cdef ff_scan_t sc
        cdef int r
        PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
        try:
            r = self.fn(<const char *>view.buf, <size_t>view.len, &sc)
            if r != FF_SCAN_DATA:
                return None
            return (PyBytes_FromStringAndSize(sc.key1, sc.key1_len),
                    PyBytes_FromStringAndSize(sc.key2, sc.key2_len), sc.first, sc.last, sc.prev)
        finally:
            PyBuffer_Release(&view)

    def key_seq(self, bytes payload):
        """(stream key bytes, seq) of a one-seq data frame, else None (the pipeline's fast path)."""
        cdef ff_scan_t sc
        cdef char key[_KEY_MAX]
        cdef Py_ssize_t n
        if self.fn(PyBytes_AS_STRING(payload), <size_t>len(payload), &sc) != FF_SCAN_DATA:
            return None
        if sc.first != sc.last or sc.prev >= 0:
            return None
        n = _make_key(&sc, key)
        if n < 0:
            return None
        return PyBytes_FromStringAndSize(key, n), sc.last


cdef struct _Slot:
    uint64_t hash       # 0: empty
    int64_t last
    Py_ssize_t key_len
    char key[_KEY_MAX]


cdef inline uint64_t _fnv1a(const char *p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = 1469598103934665603ULL
    cdef uint64_t prime = 1099511628211ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ <unsigned char>p[i]) * prime
    return h | 1  # never 0, the empty mark


cdef class StreamTable:
    """Fixed open-addressing table: stream key bytes -> the stream's last sequence number.

    Linear probing at under half load, so a lookup costs the same for 1 or 1,000 streams.
    Entries are never removed; once ``capacity`` streams are held, new ones are refused and
    their frames simply keep going to Python.
    """

    cdef _Slot slots[_SLOTS]
    cdef readonly Py_ssize_t size
    cdef readonly Py_ssize_t capacity

    def __cinit__(self, Py_ssize_t capacity=_SLOTS // 2):
        self.capacity = min(capacity, _SLOTS // 2)

    cdef _Slot *find(self, const char *key, Py_ssize_t n, bint create) noexcept:
        cdef uint64_t h = _fnv1a(key, n)
        cdef uint64_t i = h & (_SLOTS - 1)
        cdef _Slot *s
        while True:
            s = &self.slots[i]
            if s.hash == 0:
                if not create or self.size >= self.capacity:
                    return NULL
                s.hash = h
                s.key_len = n
                memcpy(s.key, key, n)
                self.size += 1
                return s
            if s.hash == h and s.key_len == n and memcmp(s.key, key, n) == 0:
                return s
            i = (i + 1) & (_SLOTS - 1)

    def register(self, bytes key, int64_t last):
        """Set a stream's last seq (adding the stream); False when the table is full."""
        if len(key) > _KEY_MAX:
            return False
        cdef _Slot *s = self.find(PyBytes_AS_STRING(key), len(key), True)
        if s == NULL:
            return False
        s.last = last
        return True

    def last(self, bytes key):
        """The last seq held for a stream, or None."""
        if len(key) > _KEY_MAX:
            return None
        cdef _Slot *s = self.find(PyBytes_AS_STRING(key), len(key), False)
        return None if s == NULL else s.last

    cdef bint advance(self, const ff_scan_t *sc) noexcept:
        """True in the steady state (a known stream continues); either way the stream's last
        becomes this frame's, so the frames after a first one or a jump are steady again."""
        cdef char key[_KEY_MAX]
        cdef Py_ssize_t n = _make_key(sc, key)
        if n < 0:
            return False
        cdef _Slot *s = self.find(key, n, False)
        if s == NULL:
            s = self.find(key, n, True)
            if s != NULL:
                s.last = sc.last
            return False
        cdef bint steady = (sc.prev == s.last) if sc.prev >= 0 else (sc.first == s.last + 1)
        s.last = sc.last
        return steady


cdef enum:
    _TIMING_BUCKET_NS = 50  # AcceptTimes' resolution
    _TIMING_BUCKETS = 2000  # 50 ns each: up to 100 us; slower frames land in the last one


cdef class AcceptTimes:
    """Histogram of callback -> accepted (the journal append returned) per journaled frame.

    What the sink adds to a frame's latency, timed in C: set as a sink's ``timing`` (the
    benchmark does; the recorder leaves it None, which costs one comparison a frame).
    """

    cdef uint64_t counts[_TIMING_BUCKETS]
    cdef readonly int64_t max_ns
    cdef readonly int bucket_ns

    def __cinit__(self):
        self.bucket_ns = _TIMING_BUCKET_NS

    cdef inline void add(self, int64_t ns) noexcept:
        cdef int64_t i = ns // _TIMING_BUCKET_NS
        if ns > self.max_ns:
            self.max_ns = ns
        self.counts[i if 0 <= i < _TIMING_BUCKETS else (0 if i < 0 else _TIMING_BUCKETS - 1)] += 1

    def buckets(self):
        """Frames per bucket: bucket i counts times in [i, i + 1) x ``bucket_ns``."""
        return [self.counts[i] for i in range(_TIMING_BUCKETS)]


cdef class FrameSink(WSListener):
    """picows listener: data frames to the journal from picows' buffer, the rest to Python.

    ``handler`` (fastfeed/recorder/feed.py) gets ``on_unusual_frame(lsn, recv_ns, payload,
    binary)`` for each frame the steady state does not cover, after the read it came in has
    been journaled, and ``on_journal_error(exc)`` when the journal refuses a frame. The table
    learns a stream from its first scanned frame: the scanner only answers for frames the
    adapter reads as that stream's sequenced message (tests/venues/test_scan_tickdb.py). ``control`` (the Connection) gets ``ws_connected(transport)``
    and ``ws_other_frame(transport, frame)`` for control frames and fragmented messages, and
    ``data(payload, binary)`` for every data frame while ``divert`` is set: Python journals
    those itself (a rotation's overlap, where it chooses each frame's flags). A frame over
    ``max_frame`` (picows' limit) ends the connection: neither it nor anything after it is taken.
    """

    cdef WalWriter _journal
    cdef Scanner _scanner
    cdef object _handler
    cdef object _control
    cdef object _always
    cdef int _slot
    cdef int64_t _max_frame  # picows' frame limit; -1 once a frame over it came: none is taken
    cdef bint _appended
    cdef uint64_t _last_lsn
    cdef int64_t _read_ns  # receive time of the socket read being handled; 0 between reads
    cdef list _unusual
    cdef readonly StreamTable table
    cdef readonly uint64_t frames
    cdef readonly uint64_t steady
    cdef public bint divert
    cdef public AcceptTimes timing  # None unless a benchmark times the sink

    def __init__(self, WalWriter journal, Scanner scanner, StreamTable table, handler, control,
                 int slot, always, int64_t max_frame=MAX_FRAME_BYTES):
        self._journal = journal
        self._max_frame = max_frame
        self._scanner = scanner
        self.table = table
        self._handler = handler
        self._control = control
        self._slot = slot
        self._always = always  # None, or the Journal: --fsync always (sync_soon, when_durable)
        self._unusual = []

    cpdef on_ws_connected(self, WSTransport transport):
        self._control.ws_connected(transport)

    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame):
        cdef WSMsgType t = frame.msg_type
        cdef ff_scan_t sc
        cdef uint64_t lsn
        cdef int64_t recv_ns, started
        cdef bint binary
        if frame.payload_size > self._max_frame:
            # picows refuses a frame over its limit from the header (close 1009), yet if the
            # rest of it and more arrive before it disconnects (10 ms later: picows 2.3.1,
            # WSProtocol._get_next_frame) it hands them all over. The connection ended at this
            # frame: it and what follows are the next connection's to resume (-1: every later
            # frame is over the limit too, so this one comparison per frame is the whole guard).
            self._max_frame = -1
        elif not (frame.fin and (t == WSMsgType.TEXT or t == WSMsgType.BINARY)):
            self._control.ws_other_frame(transport, frame)
        elif self.divert:
            self.frames += 1
            self._control.data(
                PyBytes_FromStringAndSize(frame.payload_ptr, frame.payload_size),
                t == WSMsgType.BINARY,
            )
        else:
            binary = t == WSMsgType.BINARY
            if not self._read_ns:
                # One clock read per socket read (~70 ns here, a sixth of a frame's cost): its
                # frames arrived together, so each is stamped when the sink began on the read.
                self._read_ns = _now_ns()
            recv_ns = self._read_ns
            started = _now_ns() if self.timing is not None else 0
            try:
                lsn = self._journal.append_raw(
                    1, self._slot, recv_ns, <const unsigned char *>frame.payload_ptr,
                    <size_t>frame.payload_size, 1 if binary else 0, False,
                )
            except JournalError as exc:
                self._read_ns = 0
                self._handler.on_journal_error(exc)
                return
            if self.timing is not None:
                self.timing.add(_now_ns() - started)
            self.frames += 1
            self._appended = True
            self._last_lsn = lsn
            if (not binary and self._scanner.fn(frame.payload_ptr, <size_t>frame.payload_size,
                                                &sc) == FF_SCAN_DATA
                    and self.table.advance(&sc)):
                self.steady += 1
            else:
                self._unusual.append((
                    lsn, recv_ns,
                    PyBytes_FromStringAndSize(frame.payload_ptr, frame.payload_size), binary,
                ))
        if frame.last_in_buffer:
            self._read_ns = 0
            self.end_of_read()

    cpdef end_of_read(self):
        """The read is journaled: hand over the rest, with ``--fsync always`` once the commit
        thread has synced the read (one sync per read; the loop reads on meanwhile)."""
        if self._always is not None and self._appended:
            self._appended = False
            self._always.sync_soon()
            # Every read's sync is watched, not only those with frames for Python: a failed
            # one is reported at once even when the read held steady frames only.
            unusual, self._unusual = self._unusual, []
            try:
                durable = self._always.when_durable(self._last_lsn)
            except JournalError as exc:
                self._handler.on_journal_error(exc)
                return
            durable.add_done_callback(partial(self._hand_over, unusual))
            return
        if not self._unusual:
            return
        unusual, self._unusual = self._unusual, []
        self._hand_over(unusual, None)

    def _hand_over(self, list unusual, durable):
        """Give Python the frames it must look at (``durable``: their read's sync, done)."""
        if durable is not None:
            if durable.cancelled():
                return  # the loop is closing: the applier derives them at the next start
            if durable.exception() is not None:
                self._handler.on_journal_error(durable.exception())
                return
        for lsn, recv_ns, payload, binary in unusual:
            self._handler.on_unusual_frame(lsn, recv_ns, payload, binary)
