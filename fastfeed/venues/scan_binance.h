/* Binance diff-depth scanner for the recorder's hot path (the contract is in scan.h).
 *
 * It accepts exactly the combined-stream push Binance sends for a diff-depth stream, in
 * Binance's own field order and without whitespace:
 *     {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":..,"s":"BTCUSDT",
 *      "U":..,"u":..,["pu":..,]"b":[["p","q"],..],"a":[..]}}
 * (futures add "T" and "pu"). key1 is the whole `stream` value; first = U, last = u; prev is
 * pu on futures (each push's pu is the previous push's u) and -1 on spot (each push's U is the
 * previous push's u + 1), following Binance's "How to manage a local order book correctly".
 *
 * It declines everything else, and everything the Python adapter would not read as the same
 * message: escapes or non-ASCII bytes in strings, numbers that are negative, fractional or over
 * 18 digits, a repeated field, a missing one, U > u, pu >= u, a `data.s` that is not the
 * stream's symbol in upper case, pu on spot or no pu on futures.
 */
#ifndef FASTFEED_SCAN_BINANCE_H
#define FASTFEED_SCAN_BINANCE_H

#include "scan_json.h"

#define FF_BN_MAX_SYMBOL 32 /* the adapter's longest symbol */

enum { FF_BN_E = 1, FF_BN_TIME = 2, FF_BN_S = 4, FF_BN_FIRST = 8, FF_BN_LAST = 16,
       FF_BN_PREV = 32, FF_BN_B = 64, FF_BN_A = 128 };

static int ff_scan_binance_market(const char *buf, size_t n, ff_scan_t *out, int futures)
{
    static const char head[] = "{\"stream\":";
    static const char data_key[] = ",\"data\":{";
    const char *p = buf, *end = buf + n, *name, *sym;
    size_t len, sym_len, i;
    unsigned seen = 0, bit;
    int64_t number;

    if (n < sizeof(head) - 1 || memcmp(p, head, sizeof(head) - 1) != 0)
        return FF_SCAN_DECLINE;
    p += sizeof(head) - 1;
    if ((p = ff_json_string(p, end, &out->key1, &out->key1_len)) == NULL)
        return FF_SCAN_DECLINE;
    out->key2 = NULL;
    out->key2_len = 0;
    /* The stream is <lower-case symbol>@depth...: the symbol is what data.s must spell. */
    const char *at = memchr(out->key1, '@', out->key1_len);
    if (at == NULL || at == out->key1 || (size_t)(at - out->key1) > FF_BN_MAX_SYMBOL)
        return FF_SCAN_DECLINE;
    sym = out->key1;
    sym_len = (size_t)(at - out->key1);
    for (i = 0; i < sym_len; i++) {
        char c = sym[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return FF_SCAN_DECLINE;
    }
    if (out->key1_len - sym_len - 1 < 5 || memcmp(at + 1, "depth", 5) != 0)
        return FF_SCAN_DECLINE;
    if ((size_t)(end - p) < sizeof(data_key) - 1 || memcmp(p, data_key, sizeof(data_key) - 1))
        return FF_SCAN_DECLINE;
    p += sizeof(data_key) - 1;

    for (;;) {
        if ((p = ff_json_key(p, end, FF_JSON_COMPACT, &name, &len)) == NULL)
            return FF_SCAN_DECLINE;
        bit = 0;
        if (ff_json_is(name, len, "e")) {
            bit = FF_BN_E;
            if ((p = ff_json_string(p, end, &name, &len)) == NULL
                || !ff_json_is(name, len, "depthUpdate"))
                return FF_SCAN_DECLINE;
        } else if (ff_json_is(name, len, "s")) {
            bit = FF_BN_S;
            if ((p = ff_json_string(p, end, &name, &len)) == NULL || len != sym_len)
                return FF_SCAN_DECLINE;
            for (i = 0; i < len; i++) {
                char c = sym[i];
                char upper = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
                if (name[i] != upper)
                    return FF_SCAN_DECLINE;
            }
        } else if (ff_json_is(name, len, "b") || ff_json_is(name, len, "a")) {
            bit = name[0] == 'b' ? FF_BN_B : FF_BN_A;
            if ((p = ff_json_levels(p, end, 2, FF_JSON_COMPACT)) == NULL)
                return FF_SCAN_DECLINE;
        } else if (p < end && *p == '"') {
            if ((p = ff_json_string(p, end, &name, &len)) == NULL)
                return FF_SCAN_DECLINE;
        } else {
            /* Every other field is a number here; the ones we read are named by their key. */
            if (ff_json_is(name, len, "E"))
                bit = FF_BN_TIME;
            else if (ff_json_is(name, len, "U"))
                bit = FF_BN_FIRST;
            else if (ff_json_is(name, len, "u"))
                bit = FF_BN_LAST;
            else if (ff_json_is(name, len, "pu"))
                bit = FF_BN_PREV;
            if ((p = ff_json_uint(p, end, &number)) == NULL)
                return FF_SCAN_DECLINE;
            if (bit == FF_BN_FIRST)
                out->first = number;
            else if (bit == FF_BN_LAST)
                out->last = number;
            else if (bit == FF_BN_PREV)
                out->prev = number;
        }
        int more = ff_json_member_end(&p, end, FF_JSON_COMPACT, &seen, bit);
        if (more < 0)
            return FF_SCAN_DECLINE;
        if (more)
            break;
    }
    /* The data object closed before p; the push closes at p and the frame ends there. */
    if (end - p != 1 || *p != '}')
        return FF_SCAN_DECLINE;
    unsigned need = FF_BN_E | FF_BN_TIME | FF_BN_S | FF_BN_FIRST | FF_BN_LAST | FF_BN_B | FF_BN_A;
    if ((seen & need) != need || out->first > out->last)
        return FF_SCAN_DECLINE;
    if (futures) {
        if (!(seen & FF_BN_PREV) || out->prev >= out->last)
            return FF_SCAN_DECLINE;
    } else {
        if (seen & FF_BN_PREV)
            return FF_SCAN_DECLINE;
        out->prev = -1;
    }
    return FF_SCAN_DATA;
}

/* Binance spot (`--venue binance`). */
static int ff_scan_binance(const char *buf, size_t n, ff_scan_t *out)
{
    return ff_scan_binance_market(buf, n, out, 0);
}

/* Binance USD-M futures (`--venue binance-futures`). */
static int ff_scan_binance_futures(const char *buf, size_t n, ff_scan_t *out)
{
    return ff_scan_binance_market(buf, n, out, 1);
}

#endif
