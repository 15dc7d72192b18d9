/* Bybit v5 order-book delta scanner for the recorder's hot path (the contract is in scan.h).
 *
 * It accepts an order-book delta as Bybit pushes it, fields in any order, without whitespace:
 *     {"topic":"orderbook.50.BTCUSDT","type":"delta","ts":..,
 *      "data":{"s":"BTCUSDT","b":[["p","q"],..],"a":[..],"u":..,"seq":..},"cts":..}
 * key1 is the topic; first = last = u and prev = -1 (Bybit API v5, "Orderbook": a delta's u is
 * the previous message's u + 1). Spot and linear frames have the same shape.
 *
 * It declines everything else: snapshots (they restart the chain: Python decides), u <= 1 (a
 * service restart), trades, replies, depths other than 1, 50, 200, 1000, a `data.s` that is
 * not the topic's symbol, escapes or non-ASCII bytes in strings, repeated or missing fields,
 * and values other than integers and plain strings in fields nobody reads.
 */
#ifndef FASTFEED_SCAN_BYBIT_H
#define FASTFEED_SCAN_BYBIT_H

#include "scan_json.h"

enum { FF_BB_TOPIC = 1, FF_BB_TYPE = 2, FF_BB_TS = 4, FF_BB_DATA = 8, FF_BB_S = 16,
       FF_BB_B = 32, FF_BB_A = 64, FF_BB_U = 128 };

/* The data object: its symbol span and u. */
static const char *ff_bb_data(const char *p, const char *end, const char **sym, size_t *sym_len,
                              int64_t *u, unsigned *seen)
{
    const char *name;
    size_t len;
    unsigned bit;
    int64_t number;
    if (p >= end || *p++ != '{')
        return NULL;
    for (;;) {
        if ((p = ff_json_key(p, end, FF_JSON_COMPACT, &name, &len)) == NULL)
            return NULL;
        bit = 0;
        if (ff_json_is(name, len, "s")) {
            bit = FF_BB_S;
            p = ff_json_string(p, end, sym, sym_len);
        } else if (ff_json_is(name, len, "b") || ff_json_is(name, len, "a")) {
            bit = name[0] == 'b' ? FF_BB_B : FF_BB_A;
            p = ff_json_levels(p, end, 2, FF_JSON_COMPACT);
        } else if (ff_json_is(name, len, "u")) {
            bit = FF_BB_U;
            if ((p = ff_json_uint(p, end, &number)) != NULL)
                *u = number;
        } else {
            p = ff_json_skip_scalar(p, end); /* seq: a cross sequence, not read */
        }
        int more = ff_json_member_end(&p, end, FF_JSON_COMPACT, seen, bit);
        if (more < 0)
            return NULL;
        if (more)
            return p;
    }
}

static int ff_scan_bybit(const char *buf, size_t n, ff_scan_t *out)
{
    const char *p = buf, *end = buf + n, *name, *value, *sym = NULL;
    size_t len, value_len, sym_len = 0;
    unsigned seen = 0, bit;
    int64_t number, u = 0;

    if (p >= end || *p++ != '{')
        return FF_SCAN_DECLINE;
    for (;;) {
        if ((p = ff_json_key(p, end, FF_JSON_COMPACT, &name, &len)) == NULL)
            return FF_SCAN_DECLINE;
        bit = 0;
        if (ff_json_is(name, len, "topic")) {
            bit = FF_BB_TOPIC;
            p = ff_json_string(p, end, &out->key1, &out->key1_len);
        } else if (ff_json_is(name, len, "type")) {
            bit = FF_BB_TYPE;
            if ((p = ff_json_string(p, end, &value, &value_len)) != NULL
                && !ff_json_is(value, value_len, "delta"))
                return FF_SCAN_DECLINE;
        } else if (ff_json_is(name, len, "ts")) {
            bit = FF_BB_TS;
            p = ff_json_uint(p, end, &number);
        } else if (ff_json_is(name, len, "data")) {
            bit = FF_BB_DATA;
            if (seen & bit)
                return FF_SCAN_DECLINE;
            p = ff_bb_data(p, end, &sym, &sym_len, &u, &seen);
        } else if (ff_json_is(name, len, "op")) {
            return FF_SCAN_DECLINE;
        } else {
            p = ff_json_skip_scalar(p, end); /* cts, and fields nobody reads */
        }
        int more = ff_json_member_end(&p, end, FF_JSON_COMPACT, &seen, bit);
        if (more < 0)
            return FF_SCAN_DECLINE;
        if (more)
            break;
    }
    if (p != end)
        return FF_SCAN_DECLINE; /* the frame ends with the object */
    unsigned need = FF_BB_TOPIC | FF_BB_TYPE | FF_BB_TS | FF_BB_DATA | FF_BB_S | FF_BB_B | FF_BB_A
                    | FF_BB_U;
    if (seen != need || u <= 1)
        return FF_SCAN_DECLINE;
    /* topic = orderbook.<depth>.<symbol>, the symbol being data.s (it has no '.'). */
    static const char book[] = "orderbook.";
    const char *t = out->key1, *t_end = out->key1 + out->key1_len, *dot;
    if (out->key1_len < sizeof(book) - 1 || memcmp(t, book, sizeof(book) - 1) != 0)
        return FF_SCAN_DECLINE;
    t += sizeof(book) - 1;
    dot = memchr(t, '.', (size_t)(t_end - t));
    if (dot == NULL)
        return FF_SCAN_DECLINE;
    len = (size_t)(dot - t);
    if (!(ff_json_is(t, len, "1") || ff_json_is(t, len, "50") || ff_json_is(t, len, "200")
          || ff_json_is(t, len, "1000")))
        return FF_SCAN_DECLINE;
    if (sym_len == 0 || (size_t)(t_end - dot - 1) != sym_len || memcmp(dot + 1, sym, sym_len)
        || memchr(sym, '.', sym_len) != NULL)
        return FF_SCAN_DECLINE;
    out->key2 = NULL;
    out->key2_len = 0;
    out->first = out->last = u;
    out->prev = -1;
    return FF_SCAN_DATA;
}

#endif
