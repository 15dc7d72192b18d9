"""The journal core: mmap'd segments, record framing, CRC32C, append and scan.

Nothing here knows about files other than the one segment it maps, about threads or asyncio:
fastfeed/journal/writer.py owns segment creation, recovery decisions, the lock and the commit thread.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.errno cimport EINTR, errno
from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, memset
from posix.fcntl cimport O_CLOEXEC, O_RDONLY, O_RDWR
from posix.fcntl cimport open as c_open
from posix.mman cimport (
    MADV_DONTNEED, MAP_FAILED, MAP_SHARED, MS_SYNC, PROT_READ, PROT_WRITE, madvise, mmap, msync,
    munmap,
)
from posix.stat cimport fstat, struct_stat
from posix.unistd cimport _SC_PAGESIZE, fdatasync, sysconf, write
from posix.unistd cimport close as c_close

import os

from fastfeed.errors import JournalCorrupt, JournalFormatError

__all__ = [
    "DEBUG_BUILD",
    "SEGMENT_FORMAT_VERSION",
    "HAVE_HW_CRC32C",
    "HEADER_BYTES",
    "MAGIC",
    "RECORD_HEADER_BYTES",
    "Segment",
    "WalWriter",
    "crc32c",
    "crc32c_sw",
    "zero_fill",
]

ff_crc32c_init()

MAGIC = b"FFWALSEG"
SEGMENT_FORMAT_VERSION = 1  # the segment file format: its header and record framing
HEADER_BYTES = 64
RECORD_HEADER_BYTES = 32
HAVE_HW_CRC32C = bool(ff_crc32c_have_hw)

# setup.py defines FASTFEED_DEBUG_BUILD for FASTFEED_DEBUG=1 builds (-O0, line tracing):
# bench/ refuses to measure such a build.
cdef extern from *:
    """
    #ifdef FASTFEED_DEBUG_BUILD
    #define FF_DEBUG_BUILD 1
    #else
    #define FF_DEBUG_BUILD 0
    #endif
    """
    int FF_DEBUG_BUILD
DEBUG_BUILD = bool(FF_DEBUG_BUILD)

cdef enum:
    _HEADER = 64
    _RECORD = 32

# check() results
cdef enum:
    REC_VALID = 0
    REC_END = 1      # length 0, or no room for a header: nothing (more) written here
    REC_BAD = 2      # a length is there but the record does not validate

cdef long _PAGE = sysconf(_SC_PAGESIZE)

cdef extern from *:
    # Linux 5.14+ (madvise(2)); an older kernel answers EINVAL and the appender faults pages
    # in itself, as before. C libraries older than glibc 2.35 do not name it: the kernel's
    # value (include/uapi/asm-generic/mman-common.h) keeps the build working there.
    """
    #include <sys/mman.h>
    #ifndef MADV_POPULATE_WRITE
    #define MADV_POPULATE_WRITE 23
    #endif
    """
    const int MADV_POPULATE_WRITE

if sizeof(RecordHeader) != _RECORD or sizeof(SegmentHeader) != _HEADER:
    raise ImportError("fastfeed.journal._wal: on-disk struct sizes do not match the format")


cdef inline uint64_t _align8(uint64_t n) noexcept nogil:
    return (n + 7) & ~(<uint64_t>7)


def crc32c(data, unsigned int value=0):
    """CRC32C of ``data`` continuing from ``value`` (hardware-accelerated where available)."""
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return ff_crc32c(value, <const unsigned char *>view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)


def crc32c_sw(data, unsigned int value=0):
    """CRC32C computed by the portable table-driven code path (to test it against hardware)."""
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return ff_crc32c_sw(value, <const unsigned char *>view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)


# A new segment is zero-filled in 64 KiB writes: ext4 (large folios, Linux 6.16+) caches a
# file in folios as large as the writes that filled it. Writeback write-protects a whole folio,
# every mapped page of it, so the folio a commit ends in is mapped writable again right after
# its sync (Segment.sync). Page-sized folios would spare that, but cost the appender a fault
# per page (CPU per message 0.45 -> 0.75 µs); 1 MiB ones made each commit ~115 TLB-shootdown
# IPIs to the appending CPU (docs/benchmarks.md, the hot path).
cdef enum:
    _ZERO_FILL = 64 * 1024
cdef char _ZEROS[_ZERO_FILL]


def zero_fill(int fd, uint64_t size):
    """Write ``size`` zero bytes at ``fd``'s offset in 64 KiB writes; 0 or the errno. One C
    loop with the GIL released: a thousand writes must not each take it back from the loop."""
    cdef uint64_t left = size
    cdef ssize_t n
    cdef int rc = 0
    with nogil:
        while left:
            n = write(fd, _ZEROS, _ZERO_FILL if left > _ZERO_FILL else left)
            if n < 0:
                if errno == EINTR:
                    continue
                rc = errno
                break
            left -= <uint64_t>n
    return rc


cdef class Segment:
    """One segment file mapped MAP_SHARED, read-only or read-write, with its header checked."""

    def __cinit__(self):
        self.fd = -1
        self.base = NULL

    def __init__(self, str path, bint writable=False):
        cdef struct_stat st
        cdef bytes bpath = os.fsencode(path)
        self.path = path
        self.writable = writable
        self.fd = c_open(bpath, (O_RDWR if writable else O_RDONLY) | O_CLOEXEC)
        if self.fd < 0:
            raise OSError(errno, os.strerror(errno), path)
        if fstat(self.fd, &st) != 0:
            raise OSError(errno, os.strerror(errno), path)
        if st.st_size < _HEADER + _RECORD:
            raise JournalCorrupt(
                f"segment {path} is {st.st_size} bytes, shorter than a header and one record",
                segment=path, offset=0,
            )
        self.size = <uint64_t>st.st_size
        prot = PROT_READ | PROT_WRITE if writable else PROT_READ
        cdef void *p = mmap(NULL, self.size, prot, MAP_SHARED, self.fd, 0)
        if p == MAP_FAILED:
            raise OSError(errno, os.strerror(errno), path)
        self.base = <unsigned char *>p
        cdef SegmentHeader *h = <SegmentHeader *>self.base
        if memcmp(h.magic, b"FFWALSEG", 8) != 0:
            raise JournalCorrupt(
                f"segment {path} does not start with {MAGIC!r}", segment=path, offset=0
            )
        if h.version != SEGMENT_FORMAT_VERSION or h.header_size != _HEADER:
            raise JournalFormatError(
                f"segment {path} has format version {h.version} (header {h.header_size} bytes);"
                f" this fastfeed reads version {SEGMENT_FORMAT_VERSION}",
                hint="use the fastfeed version that wrote this data dir",
            )
        if h.size != self.size:
            raise JournalCorrupt(
                f"segment {path} header says {h.size} bytes but the file has {self.size}",
                segment=path, offset=24,
            )
        self.index = h.index
        self.seed = <uint32_t>(h.index & 0xFFFFFFFF)

    def __dealloc__(self):
        if self.base != NULL:
            munmap(self.base, self.size)
        if self.fd >= 0:
            c_close(self.fd)

    def close(self):
        """Unmap and close; the object is unusable afterwards."""
        if self.base != NULL:
            munmap(self.base, self.size)
            self.base = NULL
        if self.fd >= 0:
            c_close(self.fd)
            self.fd = -1

    cdef int check(self, uint64_t off, uint64_t prev_lsn) noexcept nogil:
        """Classify the record at ``off``; ``prev_lsn`` 0 accepts any LSN >= 1."""
        if off + _RECORD > self.size:
            return REC_END
        cdef RecordHeader *h = <RecordHeader *>(self.base + off)
        cdef uint32_t length = ff_load_acquire_u32(&h.length)
        if length == 0:
            return REC_END
        if length < _RECORD or off + length > self.size:
            return REC_BAD
        if ff_crc32c(self.seed, self.base + off + 8, length - 8) != h.crc:
            return REC_BAD
        if (prev_lsn != 0 and h.lsn != prev_lsn + 1) or h.lsn == 0:
            return REC_BAD
        return REC_VALID

    def _ensure_open(self):
        if self.base == NULL:
            raise ValueError(f"segment {self.path} is closed")

    def scan(self, uint64_t offset, uint64_t prev_lsn):
        """Walk valid records from ``offset``: (stop offset, last LSN, records, stopped on bad)."""
        self._ensure_open()
        cdef uint64_t count = 0
        cdef int r
        with nogil:
            while True:
                r = self.check(offset, prev_lsn)
                if r != REC_VALID:
                    break
                prev_lsn = (<RecordHeader *>(self.base + offset)).lsn
                offset = _align8(offset + (<RecordHeader *>(self.base + offset)).length)
                count += 1
        return offset, prev_lsn, count, r == REC_BAD

    def find_valid(self, uint64_t offset, uint64_t above_lsn):
        """First 8-aligned offset >= ``offset`` holding a valid record with LSN > ``above_lsn``.

        Used only by recovery to tell a torn tail (nothing valid after the damage) from mid-log
        corruption. Returns -1 when there is none.
        """
        self._ensure_open()
        cdef uint64_t off = _align8(offset)
        cdef RecordHeader *h
        cdef int64_t found = -1
        with nogil:
            while off + _RECORD <= self.size:
                h = <RecordHeader *>(self.base + off)
                # cheap filters first: plausible length and LSN, then the CRC
                if (h.length >= _RECORD and off + h.length <= self.size and h.lsn > above_lsn
                        and self.check(off, 0) == REC_VALID):
                    found = <int64_t>off
                    break
                off += 8
        return found

    def extent(self, uint64_t offset):
        """One past the last nonzero byte at or after ``offset`` (``offset`` if all zero)."""
        self._ensure_open()
        cdef uint64_t end = self.size
        cdef uint64_t word
        with nogil:
            # eight bytes at a time over the (usually long) zero tail, then byte by byte
            while end >= offset + 8:
                memcpy(&word, self.base + end - 8, 8)
                if word != 0:
                    break
                end -= 8
            while end > offset and self.base[end - 1] == 0:
                end -= 1
        return end

    def first_lsn(self):
        """LSN of the record at the start of the segment, or 0 if it holds no valid record."""
        self._ensure_open()
        if self.check(_HEADER, 0) != REC_VALID:
            return 0
        return (<RecordHeader *>(self.base + _HEADER)).lsn

    def seek(self, uint64_t lsn):
        """(offset, previous LSN) of the first record with LSN >= ``lsn``, or of the log end.

        Walks record headers only (no CRC): the reader validates each record it returns.
        """
        self._ensure_open()
        cdef uint64_t off = _HEADER
        cdef uint64_t prev = 0
        cdef RecordHeader *h
        cdef uint32_t length
        with nogil:
            while off + _RECORD <= self.size:
                h = <RecordHeader *>(self.base + off)
                length = ff_load_acquire_u32(&h.length)
                if length < _RECORD or off + length > self.size or h.lsn >= lsn:
                    break
                if prev != 0 and h.lsn != prev + 1:
                    break
                prev = h.lsn
                off = _align8(off + length)
        return off, prev

    def record(self, uint64_t offset, uint64_t prev_lsn):
        """The valid record at ``offset`` following ``prev_lsn`` (0: any) as a tuple, or None.

        Returns (lsn, kind, stream, flags, recv_ns, payload, next offset); the payload is a copy.
        """
        self._ensure_open()
        if self.check(offset, prev_lsn) != REC_VALID:
            return None
        cdef RecordHeader *h = <RecordHeader *>(self.base + offset)
        payload = PyBytes_FromStringAndSize(
            <const char *>(self.base + offset + _RECORD), h.length - _RECORD
        )
        return (h.lsn, h.kind, h.stream, h.flags, h.recv_ns, payload,
                _align8(offset + h.length))

    def durable_mark(self):
        """The LSN a writer recorded here as durable, or 0 (none, or its CRC does not match)."""
        self._ensure_open()
        cdef SegmentHeader *h = <SegmentHeader *>self.base
        cdef uint64_t mark = h.durable_mark
        if mark == 0 or h.mark_crc != ff_crc32c(self.seed, <unsigned char *>&mark, 8):
            return 0
        return mark

    def set_durable_mark(self, uint64_t lsn):
        """Record in the header that everything up to ``lsn`` is durable.

        Only a store into the mapping: the next sync of this file carries it to the disk, so
        the mark on disk always trails what really is durable (see journal_recovery).
        """
        self._ensure_open()
        if not self.writable:
            raise ValueError(f"segment {self.path} is mapped read-only")
        cdef SegmentHeader *h = <SegmentHeader *>self.base
        h.durable_mark = lsn
        h.mark_crc = ff_crc32c(self.seed, <unsigned char *>&lsn, 8)

    def zero(self, uint64_t start, uint64_t end):
        """Overwrite [start, end) with zeros (recovery only; the caller syncs)."""
        self._ensure_open()
        if not self.writable:
            raise ValueError(f"segment {self.path} is mapped read-only")
        if start < _HEADER or end > self.size or start > end:
            raise ValueError(f"bad zero range [{start}, {end}) in {self.path}")
        memset(self.base + start, 0, end - start)

    def sync(self, uint64_t start, uint64_t end):
        """Make [start, end) and the header (its durable mark) durable; 0 or the errno.

        One msync(MS_SYNC) from the segment's start to ``end``: on Linux that is fdatasync of
        just that file range (mm/msync.c calls vfs_fsync_range(file, start, end, datasync=1):
        written back, device cache flushed). Pages already synced are clean and cost nothing.
        A whole-file fdatasync would also write back the pages appended since the commit's
        snapshot, write-protecting each mapped one with a TLB-shootdown IPI to the appending
        CPU. The GIL is released.

        A writable mapping first drops its own page-table entries for the whole pages of the
        range (the appender is past them; they stay dirty in the page cache and are synced
        all the same), so writeback has no mapped page to write-protect either: one ranged
        TLB flush instead of one IPI per page (docs/benchmarks.md, the hot path).
        """
        self._ensure_open()
        cdef uint64_t a = start - start % <uint64_t>_PAGE
        cdef uint64_t whole = end - end % <uint64_t>_PAGE
        cdef uint64_t folio_end = min(self.size, end - end % _ZERO_FILL + _ZERO_FILL)
        cdef int rc = 0
        if end > self.size or start > end:
            raise ValueError(f"bad sync range [{start}, {end}) in {self.path}")
        with nogil:
            if self.writable and whole > a:
                # Advice only: if refused, msync below syncs the range all the same (slower).
                madvise(self.base + a, whole - a, MADV_DONTNEED)
            if end > a:
                if msync(self.base, end, MS_SYNC) != 0:
                    rc = errno
                elif self.writable and folio_end > whole:
                    # Writeback write-protected the folio appends go on in, pages past the
                    # commit included: map them writable again now, so the appender does not
                    # take those faults (WalWriter._prefault does the pages after it).
                    madvise(self.base + whole, folio_end - whole, MADV_POPULATE_WRITE)
            elif fdatasync(self.fd) != 0:
                rc = errno
        return rc


cdef class WalWriter:
    """The append path: frames records into the current segment's mapping.

    fastfeed.journal.Journal holds one and gives it, in ``_writer_setup``, the three things it
    cannot do itself: wake the commit thread, move to the next segment (``rollover(total)``)
    and sync before an append returns in ALWAYS mode (``commit()``). Everything per record
    stays in C.
    """

    def __cinit__(self):
        self._retired = []
        self._next_lsn = 1
        self._wake_above = <uint64_t>-1

    def _writer_setup(self, bint always, wake, rollover, commit):
        """Set the durability mode and the owner's callbacks (see the class docstring)."""
        self._always = always
        self._wake = wake
        self._rollover = rollover
        self._commit = commit

    def _install(self, Segment seg, uint64_t offset, uint64_t next_lsn):
        """Make ``seg`` the segment appends go to, at ``offset``; retire the previous one."""
        if not seg.writable:
            raise ValueError(f"segment {seg.path} is mapped read-only")
        if self._seg is not None:
            self._retired.append((self._seg, self._sync_from, self._off))
        self._seg = seg
        self._base = seg.base
        self._size = seg.size
        self._off = offset
        self._sync_from = offset
        self._prefaulted = 0
        self._next_lsn = next_lsn

    def _fail(self, exc):
        """Refuse every later append with ``exc`` (a failed sync is fatal)."""
        self._failure = exc

    def _arm(self, uint64_t above):
        """Wake the commit thread once more than ``above`` unsynced bytes are appended."""
        self._wake_above = above

    @property
    def accepted_lsn(self):
        """LSN of the last record written into the shared mapping (0 if none)."""
        return self._next_lsn - 1

    @property
    def unsynced_bytes(self):
        """Bytes appended since the last commit snapshot."""
        return self._unsynced

    @property
    def write_offset(self):
        """(segment index, offset) where the next record goes."""
        return (self._seg.index if self._seg is not None else 0), self._off

    @property
    def segment(self):
        """The segment appends currently go to."""
        return self._seg

    def _take_retired(self):
        """(accepted LSN, [(segment, start, end), ...]) of segments rolled away from; reset."""
        ranges = self._retired
        self._retired = []
        return self._next_lsn - 1, ranges

    def _close_mappings(self):
        """Unmap every segment this writer holds (after close)."""
        for seg, _, _ in self._retired:
            seg.close()
        self._retired = []
        if self._seg is not None:
            self._seg.close()
        self._base = NULL
        self._size = 0
        self._off = 0

    def _prefault(self, uint64_t ahead, uint64_t most):
        """Map writable, off the appending thread, the pages up to ``ahead`` bytes past the
        append position, at most ``most`` bytes of them a call.

        Commit thread, after a commit: every page past the append position is unmapped until
        first touched, and the appender would take a write fault (the file system's
        page_mkwrite) on each. Faulting them in here moves that cost off the event loop; pages
        already faulted in are not asked for again (Segment.sync remaps the folio a commit
        ended in). ``most`` bounds the time the caller holds its lock. Advice only: nothing
        depends on it having worked.
        """
        cdef Segment seg = self._seg
        if seg is None or self._base == NULL:
            return
        cdef unsigned char *base = self._base
        cdef uint64_t start = max(self._off - self._off % <uint64_t>_PAGE, self._prefaulted)
        cdef uint64_t end = min(self._size, self._off + ahead, start + most)
        end = end - end % <uint64_t>_PAGE
        if end <= start:
            return
        with nogil:
            # The segment stays mapped meanwhile: the caller holds the commit lock, under
            # which alone a segment rolled away from is unmapped.
            madvise(base + start, end - start, MADV_POPULATE_WRITE)
        if self._seg is seg:
            self._prefaulted = end

    def _take_unsynced(self):
        """Snapshot for a commit: (LSN covered, [(segment, start, end), ...]) and reset."""
        ranges = self._retired
        if self._seg is not None and self._off > self._sync_from:
            ranges.append((self._seg, self._sync_from, self._off))
        self._retired = []
        self._sync_from = self._off
        self._unsynced = 0
        return self._next_lsn - 1, ranges

    def append(self, int kind, int stream, int64_t recv_ns, payload, unsigned int flags=0):
        """Append one record and return its LSN; the payload is copied before return."""
        cdef Py_buffer view
        PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
        try:
            return self.append_raw(
                kind, stream, recv_ns, <const unsigned char *>view.buf, <size_t>view.len, flags,
                True,
            )
        finally:
            PyBuffer_Release(&view)

    cdef uint64_t append_raw(self, int kind, int stream, int64_t recv_ns,
                             const unsigned char *buf, size_t n, unsigned int flags,
                             bint commit) except 0:
        """Append ``n`` bytes at ``buf`` as one record; return its LSN (the C-level append).

        For callers holding memory no Python object owns (the frame sink: picows' read
        buffer). With ``commit`` False an ALWAYS-mode journal does not sync: the caller
        commits once for a whole socket read before it processes any of its frames.
        """
        cdef RecordHeader *h
        cdef uint64_t lsn, total, padded
        if self._failure is not None:
            raise self._failure
        if kind < 0 or kind > 0xFFFF or stream < 0 or stream > 0xFFFF:
            raise ValueError(f"kind {kind} and stream {stream} must fit in 16 bits")
        total = _RECORD + <uint64_t>n
        padded = _align8(total)
        if self._base == NULL or self._off + padded > self._size:
            self._rollover(total)  # raises if it can never fit or no segment can be made
            if self._base == NULL or self._off + padded > self._size:
                # Never write past a mapping, whatever segment rollover installed.
                raise ValueError(
                    f"record of {total} bytes does not fit segment {self._seg.path}"
                )
        lsn = self._next_lsn
        h = <RecordHeader *>(self._base + self._off)
        # 1. header fields other than length; 2. payload and zero padding; 3. CRC over
        # [8, total); 4. length last, with release order, so a concurrent reader or a crash
        # never shows a length whose bytes are not all there.
        h.lsn = lsn
        h.recv_ns = recv_ns
        h.kind = <uint16_t>kind
        h.stream = <uint16_t>stream
        h.flags = flags
        memcpy(self._base + self._off + _RECORD, buf, n)
        if padded > total:
            memset(self._base + self._off + total, 0, padded - total)
        h.crc = ff_crc32c(self._seg.seed, self._base + self._off + 8, total - 8)
        ff_store_release_u32(&h.length, <uint32_t>total)
        self._off += padded
        self._unsynced += padded
        self._next_lsn = lsn + 1
        if self._always:
            if commit:
                self._commit()
        elif self._unsynced > self._wake_above:
            self._wake_above = <uint64_t>-1
            self._wake()
        return lsn
