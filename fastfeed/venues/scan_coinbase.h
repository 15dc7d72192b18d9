/* Coinbase Advanced Trade level2 update scanner for the recorder's hot path (contract: scan.h).
 *
 * It accepts a level2 update as Coinbase pushes it, fields in any order, without whitespace:
 *     {"channel":"l2_data","client_id":"","timestamp":"2023-02-09T20:32:50.714964855Z",
 *      "sequence_num":N,"events":[{"type":"update","product_id":"BTC-USD","updates":[{..},..]}]}
 * Coinbase numbers every message of a connection (Advanced Trade WebSocket, "Sequence
 * Numbers"), so the stream is the connection: key1 is the constant `sequence_num` field name,
 * first = last = sequence_num, prev = -1. Heartbeats, subscription acks, snapshots and trades
 * carry the next number too but are declined: Python reads them and keeps the chain.
 *
 * It declines everything else, and any frame the Python adapter would read differently: a
 * timestamp not of the form YYYY-MM-DDTHH:MM:SS.f{1,9}Z with a real calendar date, events of
 * more than one product, an empty events array, escapes or non-ASCII bytes in strings,
 * repeated or missing fields, and nested values in fields nobody reads.
 */
#ifndef FASTFEED_SCAN_COINBASE_H
#define FASTFEED_SCAN_COINBASE_H

#include "scan_json.h"

enum { FF_CB_CHANNEL = 1, FF_CB_TIME = 2, FF_CB_SEQ = 4, FF_CB_EVENTS = 8 };
enum { FF_CB_E_TYPE = 1, FF_CB_E_PRODUCT = 2, FF_CB_E_UPDATES = 4 };

static int ff_cb_digits(const char *s, int n, int *value)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *value = v;
    return 1;
}

/* YYYY-MM-DDTHH:MM:SS.f{1,9}Z, a real date (what Python's fromisoformat accepts, and less). */
static int ff_cb_time_ok(const char *s, size_t len)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec, f;
    if (len < 22 || len > 30 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':'
        || s[16] != ':' || s[19] != '.' || s[len - 1] != 'Z')
        return 0;
    if (!ff_cb_digits(s, 4, &y) || !ff_cb_digits(s + 5, 2, &mo) || !ff_cb_digits(s + 8, 2, &d)
        || !ff_cb_digits(s + 11, 2, &h) || !ff_cb_digits(s + 14, 2, &mi)
        || !ff_cb_digits(s + 17, 2, &sec) || !ff_cb_digits(s + 20, (int)len - 21, &f))
        return 0;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59)
        return 0;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= days[mo - 1] + (mo == 2 && leap);
}

/* An object whose values are all scalars (an entry of `updates`). */
static const char *ff_cb_flat_object(const char *p, const char *end)
{
    const char *name;
    size_t len;
    if (p >= end || *p++ != '{')
        return NULL;
    if (p < end && *p == '}')
        return p + 1;
    for (;;) {
        if ((p = ff_json_key(p, end, FF_JSON_COMPACT, &name, &len)) == NULL)
            return NULL;
        p = ff_json_skip_scalar(p, end);
        int more = ff_json_next_member(&p, end, FF_JSON_COMPACT);
        if (more < 0)
            return NULL;
        if (more)
            return p;
    }
}

/* The events array: every event an update of the same product. */
static const char *ff_cb_events(const char *p, const char *end)
{
    const char *name, *value, *product = NULL, *prod;
    size_t len, value_len, product_len = 0, prod_len;
    unsigned seen, bit;
    if (p >= end || *p++ != '[')
        return NULL;
    for (;;) {
        if (p >= end || *p++ != '{')
            return NULL;
        seen = 0;
        for (;;) {
            if ((p = ff_json_key(p, end, FF_JSON_COMPACT, &name, &len)) == NULL)
                return NULL;
            bit = 0;
            if (ff_json_is(name, len, "type")) {
                bit = FF_CB_E_TYPE;
                if ((p = ff_json_string(p, end, &value, &value_len)) != NULL
                    && !ff_json_is(value, value_len, "update"))
                    return NULL;
            } else if (ff_json_is(name, len, "product_id")) {
                bit = FF_CB_E_PRODUCT;
                if ((p = ff_json_string(p, end, &prod, &prod_len)) == NULL || prod_len == 0)
                    return NULL;
                if (product == NULL) {
                    product = prod;
                    product_len = prod_len;
                } else if (prod_len != product_len || memcmp(prod, product, prod_len) != 0) {
                    return NULL;
                }
            } else if (ff_json_is(name, len, "updates")) {
                bit = FF_CB_E_UPDATES;
                if (p >= end || *p++ != '[')
                    return NULL;
                if (p < end && *p == ']') {
                    p++;
                } else {
                    for (;;) {
                        if ((p = ff_cb_flat_object(p, end)) == NULL || p >= end)
                            return NULL;
                        if (*p == ']') {
                            p++;
                            break;
                        }
                        if (*p++ != ',')
                            return NULL;
                    }
                }
            } else {
                p = ff_json_skip_scalar(p, end);
            }
            int more = ff_json_member_end(&p, end, FF_JSON_COMPACT, &seen, bit);
            if (more < 0)
                return NULL;
            if (more)
                break;
        }
        if (seen != (FF_CB_E_TYPE | FF_CB_E_PRODUCT | FF_CB_E_UPDATES))
            return NULL;
        if (p >= end)
            return NULL;
        if (*p == ']')
            return p + 1;
        if (*p++ != ',')
            return NULL;
    }
}

static int ff_scan_coinbase(const char *buf, size_t n, ff_scan_t *out)
{
    const char *p = buf, *end = buf + n, *name, *value;
    size_t len, value_len;
    unsigned seen = 0, bit;
    int64_t number;

    if (p >= end || *p++ != '{')
        return FF_SCAN_DECLINE;
    for (;;) {
        if ((p = ff_json_key(p, end, FF_JSON_COMPACT, &name, &len)) == NULL)
            return FF_SCAN_DECLINE;
        bit = 0;
        if (ff_json_is(name, len, "channel")) {
            bit = FF_CB_CHANNEL;
            if ((p = ff_json_string(p, end, &value, &value_len)) != NULL
                && !ff_json_is(value, value_len, "l2_data"))
                return FF_SCAN_DECLINE;
        } else if (ff_json_is(name, len, "timestamp")) {
            bit = FF_CB_TIME;
            if ((p = ff_json_string(p, end, &value, &value_len)) != NULL
                && !ff_cb_time_ok(value, value_len))
                return FF_SCAN_DECLINE;
        } else if (ff_json_is(name, len, "sequence_num")) {
            bit = FF_CB_SEQ;
            out->key1 = name;
            out->key1_len = len;
            if ((p = ff_json_uint(p, end, &number)) != NULL)
                out->last = number;
        } else if (ff_json_is(name, len, "events")) {
            bit = FF_CB_EVENTS;
            p = ff_cb_events(p, end);
        } else if (ff_json_is(name, len, "type")) {
            return FF_SCAN_DECLINE; /* {"type":"error",..} is a reply */
        } else {
            p = ff_json_skip_scalar(p, end); /* client_id, and fields nobody reads */
        }
        int more = ff_json_member_end(&p, end, FF_JSON_COMPACT, &seen, bit);
        if (more < 0)
            return FF_SCAN_DECLINE;
        if (more)
            break;
    }
    if (p != end || seen != (FF_CB_CHANNEL | FF_CB_TIME | FF_CB_SEQ | FF_CB_EVENTS))
        return FF_SCAN_DECLINE;
    out->key2 = NULL;
    out->key2_len = 0;
    out->first = out->last;
    out->prev = -1;
    return FF_SCAN_DATA;
}

#endif
