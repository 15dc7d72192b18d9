/* TickDB (and the built-in simulator) push scanner for the recorder's hot path; contract in scan.h.
 *
 * Says FF_SCAN_DATA only for a frame TickDBAdapter.parse would turn into a sequenced Message
 * (fastfeed/venues/tickdb.py): one JSON object with "cmd" one of depth/trade/ticker, no "code",
 * a positive "seq", an optional non-negative "sent_ns", and "data" holding a valid "symbol", an
 * integer "timestamp" and the channel's fields (depth: "bids"/"asks" arrays of [str, str];
 * trade: "price"/"quantity"/"side" strings; ticker: "last"/"volume" strings). The key spans are
 * the cmd (channel) and symbol; first == last == seq; prev = -1.
 *
 * It reads the narrow JSON of scan_json.h (with whitespace between tokens, as json.dumps
 * writes), and also declines a relevant key given twice (orjson keeps the last; we do not
 * guess). Declining only costs a trip through the Python adapter.
 */
#ifndef FASTFEED_SCAN_TICKDB_H
#define FASTFEED_SCAN_TICKDB_H

#include "scan_json.h"

#define FF_TICKDB_MAX_SYMBOL 32 /* MAX_SYMBOL_LEN in tickdb.py */

static int ff_symbol_ok(const char *s, size_t n)
{
    if (n == 0 || n > FF_TICKDB_MAX_SYMBOL)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == ':' || ch == '/' || ch == '-'))
            return 0;
    }
    return 1;
}

/* Fields of "data" that decide whether the adapter accepts a push: 0 absent, 1 valid, -1 present
 * with the wrong type. Index order: FF_F_* below. */
enum { FF_F_BIDS, FF_F_ASKS, FF_F_PRICE, FF_F_QUANTITY, FF_F_SIDE, FF_F_LAST, FF_F_VOLUME, FF_F_N };
static const char *const ff_tickdb_fields[FF_F_N] = {"bids",     "asks", "price", "quantity",
                                                     "side",     "last", "volume"};

typedef struct {
    const char *symbol;
    size_t symbol_len;
    int have_symbol;
    int have_ts;
    int field[FF_F_N];
} ff_tickdb_data_t;

/* The "data" object at p; returns the byte after its closing brace. */
static const char *ff_tickdb_data(const char *p, const char *end, ff_tickdb_data_t *d)
{
    const char *k;
    size_t kn;
    int more;
    if (p >= end || *p != '{')
        return NULL;
    p = ff_json_ws(p + 1, end);
    if (p < end && *p == '}')
        return p + 1;
    do {
        if ((p = ff_json_key(p, end, FF_JSON_SPACED, &k, &kn)) == NULL)
            return NULL;
        const char *value = p;
        if (ff_json_is(k, kn, "symbol")) {
            if (d->have_symbol)
                return NULL;
            p = ff_json_string(p, end, &d->symbol, &d->symbol_len);
            d->have_symbol = 1;
        } else if (ff_json_is(k, kn, "timestamp")) {
            int64_t ts;
            if (d->have_ts)
                return NULL;
            p = ff_json_int(p, end, FF_JSON_INT_DIGITS, &ts);
            d->have_ts = 1;
        } else {
            int i;
            for (i = 0; i < FF_F_N; i++)
                if (ff_json_is(k, kn, ff_tickdb_fields[i]))
                    break;
            if (i < FF_F_N) {
                const char *s;
                size_t n;
                if (d->field[i] != 0)
                    return NULL; /* given twice */
                if (i <= FF_F_ASKS)
                    p = ff_json_levels(p, end, 2, FF_JSON_SPACED);
                else
                    p = ff_json_string(p, end, &s, &n);
                d->field[i] = p != NULL ? 1 : -1;
                if (p == NULL)
                    p = ff_json_skip(value, end, 2); /* another type: read past it */
            } else {
                p = ff_json_skip(p, end, 2);
            }
        }
    } while ((more = ff_json_next_member(&p, end, FF_JSON_SPACED)) == 0);
    return more > 0 ? p : NULL;
}

static int ff_scan_tickdb(const char *buf, size_t n, ff_scan_t *out)
{
    const char *p = buf, *end = buf + n, *cmd = NULL, *k;
    size_t cmd_len = 0, kn;
    int64_t seq = 0, sent_ns;
    int have_seq = 0, have_sent = 0, have_data = 0, more;
    ff_tickdb_data_t d;
    memset(&d, 0, sizeof d);

    p = ff_json_ws(p, end);
    if (p >= end || *p != '{')
        return FF_SCAN_DECLINE;
    p = ff_json_ws(p + 1, end);
    do {
        if ((p = ff_json_key(p, end, FF_JSON_SPACED, &k, &kn)) == NULL)
            return FF_SCAN_DECLINE;
        if (ff_json_is(k, kn, "cmd")) {
            if (cmd != NULL || (p = ff_json_string(p, end, &cmd, &cmd_len)) == NULL)
                return FF_SCAN_DECLINE;
        } else if (ff_json_is(k, kn, "seq")) {
            if (have_seq || (p = ff_json_int(p, end, FF_JSON_INT_DIGITS, &seq)) == NULL || seq < 1)
                return FF_SCAN_DECLINE;
            have_seq = 1;
        } else if (ff_json_is(k, kn, "sent_ns")) {
            if (have_sent)
                return FF_SCAN_DECLINE;
            have_sent = 1;
            const char *null_end = ff_json_lit(p, end, "null");
            if (null_end != NULL)
                p = null_end;
            else if ((p = ff_json_int(p, end, FF_JSON_INT_DIGITS, &sent_ns)) == NULL || sent_ns < 0)
                return FF_SCAN_DECLINE;
        } else if (ff_json_is(k, kn, "data")) {
            if (have_data || (p = ff_tickdb_data(p, end, &d)) == NULL)
                return FF_SCAN_DECLINE;
            have_data = 1;
        } else if (ff_json_is(k, kn, "code")) {
            return FF_SCAN_DECLINE; /* a reply, not a push */
        } else {
            p = ff_json_skip(p, end, 1);
        }
    } while ((more = ff_json_next_member(&p, end, FF_JSON_SPACED)) == 0);
    if (more < 0 || ff_json_ws(p, end) != end || cmd == NULL || !have_seq || !have_data ||
        !d.have_symbol || !d.have_ts || !ff_symbol_ok(d.symbol, d.symbol_len))
        return FF_SCAN_DECLINE;
    if (ff_json_is(cmd, cmd_len, "depth")) {
        if (d.field[FF_F_BIDS] != 1 || d.field[FF_F_ASKS] != 1)
            return FF_SCAN_DECLINE;
    } else if (ff_json_is(cmd, cmd_len, "trade")) {
        if (d.field[FF_F_PRICE] != 1 || d.field[FF_F_QUANTITY] != 1 || d.field[FF_F_SIDE] != 1)
            return FF_SCAN_DECLINE;
    } else if (ff_json_is(cmd, cmd_len, "ticker")) {
        if (d.field[FF_F_LAST] != 1 || d.field[FF_F_VOLUME] != 1)
            return FF_SCAN_DECLINE;
    } else {
        return FF_SCAN_DECLINE;
    }
    out->key1 = cmd;
    out->key1_len = cmd_len;
    out->key2 = d.symbol;
    out->key2_len = d.symbol_len;
    out->first = out->last = seq;
    out->prev = -1;
    return FF_SCAN_DATA;
}

#endif
