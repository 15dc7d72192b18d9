# On-disk layout of the journal (all little-endian; the format is described in full in
# docs/architecture.md and fastfeed/journal/writer.py). Natural alignment gives exactly these offsets.

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t


cdef extern from "_crc32c.h":
    void ff_crc32c_init()
    uint32_t ff_crc32c(uint32_t seed, const unsigned char *p, size_t n) nogil
    uint32_t ff_crc32c_sw(uint32_t seed, const unsigned char *p, size_t n) nogil
    int ff_crc32c_have_hw
    void ff_store_release_u32(uint32_t *p, uint32_t v) nogil
    uint32_t ff_load_acquire_u32(const uint32_t *p) nogil


cdef struct SegmentHeader:      # at offset 0 of every segment file, 64 bytes
    char magic[8]               # 0:  b"FFWALSEG"
    uint32_t version            # 8:  format version (1)
    uint32_t header_size        # 12: 64
    uint64_t index              # 16: segment index, as in the file name
    uint64_t size               # 24: segment file size in bytes
    uint64_t durable_mark       # 32: an LSN known durable when written here (0: none yet)
    uint32_t mark_crc           # 40: CRC32C of durable_mark, seeded with the index
    uint8_t reserved[20]        # 44: zero


cdef struct RecordHeader:       # at offset 64 and every align8(offset + length) after it, 32 bytes
    uint32_t length             # 0:  32 + payload bytes, unpadded; 0 = end of log here. Stored last.
    uint32_t crc                # 4:  CRC32C of record bytes [8, length), seeded with segment index
    uint64_t lsn                # 8:  1, 2, 3, ... continuous across segments
    int64_t recv_ns             # 16: wall-clock receive time, ns
    uint16_t kind               # 24: RecordKind
    uint16_t stream             # 26: connection slot
    uint32_t flags              # 28: bit 0 = binary frame


cdef class Segment:
    cdef readonly str path
    cdef readonly uint64_t index
    cdef readonly uint64_t size
    cdef readonly bint writable
    cdef int fd
    cdef unsigned char *base
    cdef uint32_t seed

    cdef int check(self, uint64_t offset, uint64_t prev_lsn) noexcept nogil


cdef class WalWriter:
    cdef Segment _seg
    cdef unsigned char *_base
    cdef uint64_t _size
    cdef uint64_t _off
    cdef uint64_t _sync_from
    cdef uint64_t _prefaulted    # pages before this offset were faulted in ahead of appends
    cdef uint64_t _unsynced
    cdef uint64_t _wake_above
    cdef uint64_t _next_lsn
    cdef int _always
    cdef list _retired
    cdef object _failure
    cdef object _wake
    cdef object _rollover       # the owner's callbacks: fastfeed/journal/writer.py
    cdef object _commit

    cdef uint64_t append_raw(self, int kind, int stream, int64_t recv_ns,
                             const unsigned char *buf, size_t n, unsigned int flags,
                             bint commit) except 0
