/* OKX v5 `books` scanner for the recorder's hot path (the contract is in scan.h).
 *
 * It accepts exactly an order-book update as OKX sends it, without whitespace:
 *     {"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update",
 *      "data":[{"asks":[["p","s","0","n"],..],"bids":[..],"ts":"ms","checksum":c,
 *               "prevSeqId":p,"seqId":s}]}
 * key1 is the channel, key2 the instId; first = prevSeqId + 1, last = seqId, prev = prevSeqId
 * (OKX API v5, "Order book channel": an update continues the book when its prevSeqId is the
 * previous message's seqId).
 *
 * It declines everything else: snapshots (prevSeqId -1), idle keepalives (seqId ==
 * prevSeqId), sequence resets (seqId < prevSeqId), other channels, a data array of more than
 * one object, escapes or non-ASCII bytes in strings, a repeated or missing field, an unknown
 * field at the top or in `arg`, and any value the Python adapter would read differently.
 */
#ifndef FASTFEED_SCAN_OKX_H
#define FASTFEED_SCAN_OKX_H

#include "scan_json.h"

enum { FF_OKX_ASKS = 1, FF_OKX_BIDS = 2, FF_OKX_TS = 4, FF_OKX_PREV = 8, FF_OKX_SEQ = 16 };

/* data[0]: fills out->prev and out->last; returns the byte after its closing brace. */
static const char *ff_okx_data(const char *p, const char *end, ff_scan_t *out)
{
    const char *name, *s;
    size_t len, i;
    unsigned seen = 0, bit;
    int64_t number;
    if (p >= end || *p++ != '{')
        return NULL;
    for (;;) {
        if ((p = ff_json_key(p, end, FF_JSON_COMPACT, &name, &len)) == NULL)
            return NULL;
        bit = 0;
        if (ff_json_is(name, len, "asks") || ff_json_is(name, len, "bids")) {
            bit = name[0] == 'a' ? FF_OKX_ASKS : FF_OKX_BIDS;
            p = ff_json_levels(p, end, 4, FF_JSON_COMPACT);
        } else if (ff_json_is(name, len, "ts")) {
            bit = FF_OKX_TS; /* a string of 1..18 ASCII digits (leading zeros allowed) */
            if ((p = ff_json_string(p, end, &s, &len)) == NULL || len == 0 || len > 18)
                return NULL;
            for (i = 0; i < len; i++)
                if (s[i] < '0' || s[i] > '9')
                    return NULL;
        } else if (ff_json_is(name, len, "prevSeqId") || ff_json_is(name, len, "seqId")) {
            bit = name[0] == 'p' ? FF_OKX_PREV : FF_OKX_SEQ;
            if ((p = ff_json_uint(p, end, &number)) == NULL)
                return NULL;
            if (bit == FF_OKX_PREV)
                out->prev = number;
            else
                out->last = number;
        } else {
            p = ff_json_skip_scalar(p, end); /* checksum (deprecated) and fields nobody reads */
        }
        int more = ff_json_member_end(&p, end, FF_JSON_COMPACT, &seen, bit);
        if (more < 0)
            return NULL;
        if (more)
            break;
    }
    if (seen != (FF_OKX_ASKS | FF_OKX_BIDS | FF_OKX_TS | FF_OKX_PREV | FF_OKX_SEQ))
        return NULL;
    return p;
}

static int ff_scan_okx(const char *buf, size_t n, ff_scan_t *out)
{
    static const char head[] = "{\"arg\":{\"channel\":";
    static const char inst[] = ",\"instId\":";
    static const char action[] = "},\"action\":\"update\",\"data\":[";
    const char *p = buf, *end = buf + n;

    if (n < sizeof(head) - 1 || memcmp(p, head, sizeof(head) - 1) != 0)
        return FF_SCAN_DECLINE;
    p += sizeof(head) - 1;
    if ((p = ff_json_string(p, end, &out->key1, &out->key1_len)) == NULL
        || !ff_json_is(out->key1, out->key1_len, "books"))
        return FF_SCAN_DECLINE;
    if ((size_t)(end - p) < sizeof(inst) - 1 || memcmp(p, inst, sizeof(inst) - 1) != 0)
        return FF_SCAN_DECLINE;
    p += sizeof(inst) - 1;
    if ((p = ff_json_string(p, end, &out->key2, &out->key2_len)) == NULL || out->key2_len == 0)
        return FF_SCAN_DECLINE;
    if ((size_t)(end - p) < sizeof(action) - 1 || memcmp(p, action, sizeof(action) - 1) != 0)
        return FF_SCAN_DECLINE;
    p += sizeof(action) - 1;
    if ((p = ff_okx_data(p, end, out)) == NULL)
        return FF_SCAN_DECLINE;
    /* One object in data, then the frame ends. */
    if (end - p != 2 || p[0] != ']' || p[1] != '}')
        return FF_SCAN_DECLINE;
    if (out->last <= out->prev)
        return FF_SCAN_DECLINE; /* keepalive or sequence reset: Python decides */
    out->first = out->prev + 1;
    return FF_SCAN_DATA;
}

#endif
