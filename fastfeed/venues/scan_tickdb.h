/* TickDB (and the built-in simulator) push scanner for the recorder's hot path; contract in scan.h.
 *
 * Says FF_SCAN_DATA only for a frame TickDBAdapter.parse would turn into a sequenced Message
 * (fastfeed/venues/tickdb.py): one JSON object with "cmd" one of depth/trade/ticker, no "code",
 * a positive "seq", an optional non-negative "sent_ns", and "data" holding a valid "symbol", an
 * integer "timestamp" and the channel's fields (depth: "bids"/"asks" arrays of [str, str];
 * trade: "price"/"quantity"/"side" strings; ticker: "last"/"volume" strings). The key spans are
 * the cmd (channel) and symbol; first == last == seq; prev = -1.
 *
 * It is deliberately narrower than JSON, declining whatever it would have to interpret: any
 * backslash escape, any byte outside printable ASCII inside a string, floats with an exponent or
 * over 18 digits a part, integers outside int64, a relevant key given twice (orjson
 * keeps the last; we do not guess), nesting deeper than FF_TICKDB_MAX_DEPTH. Declining only costs
 * a trip through the Python adapter.
 */
#ifndef FASTFEED_SCAN_TICKDB_H
#define FASTFEED_SCAN_TICKDB_H

#include <string.h>

#include "scan.h"

#define FF_TICKDB_MAX_DEPTH 32
#define FF_TICKDB_MAX_DIGITS 18     /* digits of a float's integer or fraction part */
#define FF_TICKDB_MAX_INT_DIGITS 19 /* an integer: int64 has 19 digits */
#define FF_TICKDB_MAX_SYMBOL 32 /* MAX_SYMBOL_LEN in tickdb.py */

typedef struct {
    const char *p;
    const char *end;
} ff_cur_t;

static inline void ff_ws(ff_cur_t *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static inline int ff_peek(ff_cur_t *c, char ch) { return c->p < c->end && *c->p == ch; }

/* A string of printable ASCII without escapes: its span (quotes excluded). 0 on anything else. */
static int ff_str(ff_cur_t *c, const char **s, size_t *n) {
    if (!ff_peek(c, '"'))
        return 0;
    const char *q = ++c->p;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') {
            *s = q;
            *n = (size_t)(c->p - q);
            c->p++;
            return 1;
        }
        if (ch < 0x20 || ch > 0x7e || ch == '\\')
            return 0;
        c->p++;
    }
    return 0;
}

/* A JSON integer that fits int64 (at most 19 digits), not followed by a fraction/exponent. */
static int ff_int(ff_cur_t *c, int64_t *out) {
    int neg = 0;
    uint64_t v = 0;
    int digits = 0;
    if (ff_peek(c, '-')) {
        neg = 1;
        c->p++;
    }
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
        return 0;
    if (*c->p == '0' && c->p + 1 < c->end && c->p[1] >= '0' && c->p[1] <= '9')
        return 0; /* leading zero: not JSON */
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (++digits > FF_TICKDB_MAX_INT_DIGITS)
            return 0;
        v = v * 10 + (uint64_t)(*c->p - '0'); /* 19 digits < 2^64: no wrap */
        c->p++;
    }
    if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E'))
        return 0;
    if (v > (uint64_t)INT64_MAX + (uint64_t)neg)
        return 0; /* outside int64: the adapter calls it malformed */
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 1;
}

/* A number with an optional fraction (no exponent), bounded digits: skipped, value unused. */
static int ff_number(ff_cur_t *c) {
    int64_t ignored;
    const char *start = c->p;
    if (ff_int(c, &ignored))
        return 1;
    c->p = start;
    if (ff_peek(c, '-'))
        c->p++;
    int digits = 0;
    if (c->p < c->end && *c->p == '0') {
        c->p++;
        digits = 1;
    } else {
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9' && digits <= FF_TICKDB_MAX_DIGITS) {
            c->p++;
            digits++;
        }
    }
    if (digits == 0 || digits > FF_TICKDB_MAX_DIGITS || !ff_peek(c, '.'))
        return 0;
    c->p++;
    int frac = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9' && frac <= FF_TICKDB_MAX_DIGITS) {
        c->p++;
        frac++;
    }
    if (frac == 0 || frac > FF_TICKDB_MAX_DIGITS)
        return 0;
    return !(c->p < c->end && (*c->p == 'e' || *c->p == 'E' || (*c->p >= '0' && *c->p <= '9')));
}

static int ff_lit(ff_cur_t *c, const char *word, size_t n) {
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
        return 0;
    c->p += n;
    return 1;
}

/* Skip any value of the accepted subset; 0 on a syntax error or anything declined. */
static int ff_skip(ff_cur_t *c, int depth) {
    const char *s;
    size_t n;
    if (c->p >= c->end || depth > FF_TICKDB_MAX_DEPTH)
        return 0;
    switch (*c->p) {
    case '"':
        return ff_str(c, &s, &n);
    case 't':
        return ff_lit(c, "true", 4);
    case 'f':
        return ff_lit(c, "false", 5);
    case 'n':
        return ff_lit(c, "null", 4);
    case '{':
        c->p++;
        ff_ws(c);
        if (ff_peek(c, '}')) {
            c->p++;
            return 1;
        }
        for (;;) {
            if (!ff_str(c, &s, &n))
                return 0;
            ff_ws(c);
            if (!ff_peek(c, ':'))
                return 0;
            c->p++;
            ff_ws(c);
            if (!ff_skip(c, depth + 1))
                return 0;
            ff_ws(c);
            if (ff_peek(c, '}')) {
                c->p++;
                return 1;
            }
            if (!ff_peek(c, ','))
                return 0;
            c->p++;
            ff_ws(c);
        }
    case '[':
        c->p++;
        ff_ws(c);
        if (ff_peek(c, ']')) {
            c->p++;
            return 1;
        }
        for (;;) {
            if (!ff_skip(c, depth + 1))
                return 0;
            ff_ws(c);
            if (ff_peek(c, ']')) {
                c->p++;
                return 1;
            }
            if (!ff_peek(c, ','))
                return 0;
            c->p++;
            ff_ws(c);
        }
    default:
        return ff_number(c);
    }
}

/* An array of [str, str] pairs (a book side). 0 if the value is anything else (c is then
 * somewhere inside it: the caller re-reads the value with ff_skip). */
static int ff_levels(ff_cur_t *c) {
    const char *s;
    size_t n;
    if (!ff_peek(c, '['))
        return 0;
    c->p++;
    ff_ws(c);
    if (ff_peek(c, ']')) {
        c->p++;
        return 1;
    }
    for (;;) {
        if (!ff_peek(c, '['))
            return 0;
        c->p++;
        ff_ws(c);
        if (!ff_str(c, &s, &n))
            return 0;
        ff_ws(c);
        if (!ff_peek(c, ','))
            return 0;
        c->p++;
        ff_ws(c);
        if (!ff_str(c, &s, &n))
            return 0;
        ff_ws(c);
        if (!ff_peek(c, ']'))
            return 0;
        c->p++;
        ff_ws(c);
        if (ff_peek(c, ']')) {
            c->p++;
            return 1;
        }
        if (!ff_peek(c, ','))
            return 0;
        c->p++;
        ff_ws(c);
    }
}

static inline int ff_key_is(const char *k, size_t n, const char *word) {
    size_t w = strlen(word);
    return n == w && memcmp(k, word, w) == 0;
}

static int ff_symbol_ok(const char *s, size_t n) {
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
    int have_ts; /* 1 int64, -1 wrong type */
    int field[FF_F_N];
} ff_tickdb_data_t;

static int ff_tickdb_data(ff_cur_t *c, ff_tickdb_data_t *d) {
    const char *k;
    size_t kn;
    if (!ff_peek(c, '{'))
        return 0;
    c->p++;
    ff_ws(c);
    if (ff_peek(c, '}')) {
        c->p++;
        return 1;
    }
    for (;;) {
        if (!ff_str(c, &k, &kn))
            return 0;
        ff_ws(c);
        if (!ff_peek(c, ':'))
            return 0;
        c->p++;
        ff_ws(c);
        const char *value = c->p;
        if (ff_key_is(k, kn, "symbol")) {
            if (d->have_symbol || !ff_str(c, &d->symbol, &d->symbol_len))
                return 0;
            d->have_symbol = 1;
        } else if (ff_key_is(k, kn, "timestamp")) {
            int64_t ts;
            if (d->have_ts || !ff_int(c, &ts))
                return 0;
            d->have_ts = 1;
        } else {
            int i;
            for (i = 0; i < FF_F_N; i++)
                if (ff_key_is(k, kn, ff_tickdb_fields[i]))
                    break;
            if (i < FF_F_N) {
                const char *s;
                size_t n;
                int ok;
                if (d->field[i] != 0)
                    return 0; /* given twice */
                ok = (i <= FF_F_ASKS) ? ff_levels(c) : ff_str(c, &s, &n);
                if (!ok) {
                    c->p = value;
                    if (!ff_skip(c, 2))
                        return 0;
                }
                d->field[i] = ok ? 1 : -1;
            } else if (!ff_skip(c, 2)) {
                return 0;
            }
        }
        ff_ws(c);
        if (ff_peek(c, '}')) {
            c->p++;
            return 1;
        }
        if (!ff_peek(c, ','))
            return 0;
        c->p++;
        ff_ws(c);
    }
}

static int ff_scan_tickdb(const char *buf, size_t n, ff_scan_t *out) {
    ff_cur_t c = {buf, buf + n};
    const char *cmd = NULL, *k;
    size_t cmd_len = 0, kn;
    int64_t seq = 0, sent_ns;
    int have_seq = 0, have_sent = 0, have_data = 0;
    ff_tickdb_data_t d;
    memset(&d, 0, sizeof d);

    ff_ws(&c);
    if (!ff_peek(&c, '{'))
        return FF_SCAN_DECLINE;
    c.p++;
    ff_ws(&c);
    for (;;) {
        if (!ff_str(&c, &k, &kn))
            return FF_SCAN_DECLINE;
        ff_ws(&c);
        if (!ff_peek(&c, ':'))
            return FF_SCAN_DECLINE;
        c.p++;
        ff_ws(&c);
        if (ff_key_is(k, kn, "cmd")) {
            if (cmd != NULL || !ff_str(&c, &cmd, &cmd_len))
                return FF_SCAN_DECLINE;
        } else if (ff_key_is(k, kn, "seq")) {
            if (have_seq || !ff_int(&c, &seq) || seq < 1)
                return FF_SCAN_DECLINE;
            have_seq = 1;
        } else if (ff_key_is(k, kn, "sent_ns")) {
            if (have_sent)
                return FF_SCAN_DECLINE;
            have_sent = 1;
            if (!ff_lit(&c, "null", 4) && (!ff_int(&c, &sent_ns) || sent_ns < 0))
                return FF_SCAN_DECLINE;
        } else if (ff_key_is(k, kn, "data")) {
            if (have_data || !ff_tickdb_data(&c, &d))
                return FF_SCAN_DECLINE;
            have_data = 1;
        } else if (ff_key_is(k, kn, "code")) {
            return FF_SCAN_DECLINE; /* a reply, not a push */
        } else if (!ff_skip(&c, 1)) {
            return FF_SCAN_DECLINE;
        }
        ff_ws(&c);
        if (ff_peek(&c, '}')) {
            c.p++;
            break;
        }
        if (!ff_peek(&c, ','))
            return FF_SCAN_DECLINE;
        c.p++;
        ff_ws(&c);
    }
    ff_ws(&c);
    if (c.p != c.end || cmd == NULL || !have_seq || !have_data || !d.have_symbol || !d.have_ts ||
        !ff_symbol_ok(d.symbol, d.symbol_len))
        return FF_SCAN_DECLINE;
    if (ff_key_is(cmd, cmd_len, "depth")) {
        if (d.field[FF_F_BIDS] != 1 || d.field[FF_F_ASKS] != 1)
            return FF_SCAN_DECLINE;
    } else if (ff_key_is(cmd, cmd_len, "trade")) {
        if (d.field[FF_F_PRICE] != 1 || d.field[FF_F_QUANTITY] != 1 || d.field[FF_F_SIDE] != 1)
            return FF_SCAN_DECLINE;
    } else if (ff_key_is(cmd, cmd_len, "ticker")) {
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
