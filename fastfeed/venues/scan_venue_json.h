/* JSON pieces the OKX, Bybit and Coinbase scanners share, on top of scan_binance.h's string,
 * integer and key readers. Each returns the byte after what it read, or NULL to decline. */
#ifndef FASTFEED_SCAN_VENUE_JSON_H
#define FASTFEED_SCAN_VENUE_JSON_H

/* The Binance scanner's readers are the shared ones; its scan functions go unused here. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "scan_binance.h"
#pragma GCC diagnostic pop

/* An array of levels, each an array of exactly `width` strings without escapes. */
static const char *ff_vj_levels(const char *p, const char *end, int width)
{
    const char *s;
    size_t len;
    if (p >= end || *p++ != '[')
        return NULL;
    if (p < end && *p == ']')
        return p + 1;
    for (;;) {
        if (p >= end || *p++ != '[')
            return NULL;
        for (int i = 0; i < width; i++) {
            if ((p = ff_bn_string(p, end, &s, &len)) == NULL || p >= end)
                return NULL;
            if (*p++ != (i + 1 < width ? ',' : ']'))
                return NULL;
        }
        if (p >= end)
            return NULL;
        if (*p == ']')
            return p + 1;
        if (*p++ != ',')
            return NULL;
    }
}

/* A field value nobody reads: a string without escapes or an integer (optionally negative).
 * Anything else (floats, objects, arrays, literals) declines: declining is always safe. */
static const char *ff_vj_skip_scalar(const char *p, const char *end)
{
    const char *s;
    size_t len;
    int64_t v;
    if (p < end && *p == '"')
        return ff_bn_string(p, end, &s, &len);
    if (p < end && *p == '-')
        p++;
    return ff_bn_uint(p, end, &v);
}

/* After an object member's value at *pp: a comma (0: another member follows, *pp past it), the
 * closing brace (1: *pp past it), anything else or a NULL *pp (-1). */
static int ff_vj_next_member(const char **pp, const char *end)
{
    const char *p = *pp;
    if (p == NULL || p >= end || (*p != ',' && *p != '}'))
        return -1;
    *pp = p + 1;
    return *p == '}';
}

/* ff_vj_next_member, after noting a known field in *seen: a repeated one (-1) is declined, as
 * the parser would keep its last value. `bit` 0 is a field nobody reads. */
static int ff_vj_member_end(const char **pp, const char *end, unsigned *seen, unsigned bit)
{
    if (*seen & bit)
        return -1;
    *seen |= bit;
    return ff_vj_next_member(pp, end);
}

#define FF_VJ_IS(name, len, lit) FF_BN_IS(name, len, lit)

#endif
