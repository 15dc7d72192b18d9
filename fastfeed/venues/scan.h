/* The contract between a venue's fast scanner and the recorder's Cython frame sink.
 *
 * A scanner reads one received frame (the bytes picows hands the sink, valid only during the
 * callback) and, for a plain market-data message of a sequenced stream, reports where the
 * stream's key is in the frame and its sequence numbers, without allocating and without calling
 * Python. For anything else (acks, errors, pongs, snapshots, frames it does not fully
 * understand, truncated or malformed input) it declines, and the venue's Python adapter decides:
 * declining is always safe, a wrong answer never is.
 *
 * One header per venue, `scan_<venue>.h`, defines
 *     static int ff_scan_<venue>(const char *buf, size_t n, ff_scan_t *out);
 * returning FF_SCAN_DATA after filling `out`, or FF_SCAN_DECLINE (out is then undefined).
 *
 * The sink keys its per-stream table by the key spans' bytes; the Python adapter registers a
 * key the first time it sees a stream, so the key bytes only have to be stable per stream, not
 * to spell channel and symbol. The sink's steady state (no Python call) is:
 *     prev >= 0:  prev == the stream's last     (venues that send the previous id: pu, prevSeqId)
 *     prev <  0:  first == the stream's last + 1 (venues that send a first id: U, or one seq)
 * after which the stream's last becomes `last`. Anything else goes to Python.
 */
#ifndef FASTFEED_SCAN_H
#define FASTFEED_SCAN_H

#include <stddef.h>
#include <stdint.h>

#define FF_SCAN_DECLINE 0
#define FF_SCAN_DATA 1

typedef struct {
    const char *key1;   /* first key span inside buf (e.g. the channel, or the whole stream name) */
    size_t key1_len;
    const char *key2;   /* second key span (e.g. the symbol); key2_len 0 when unused */
    size_t key2_len;
    int64_t first;      /* the first sequence number this message covers */
    int64_t last;       /* the last one (== first for one-number venues) */
    int64_t prev;       /* the previous message's `last` as the venue states it, or -1 */
} ff_scan_t;

#endif
