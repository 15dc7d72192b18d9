/* The JSON readers every venue's scanner is built from (the scanner contract is in scan.h).
 *
 * Each reader takes the position of a token and the end of the frame and returns the byte after
 * what it read, or NULL to decline. They read a deliberately narrow JSON, declining whatever
 * they would have to interpret: strings hold printable ASCII and no escape (so a span's bytes
 * are exactly the string the adapter reads), integers fit int64 (at most FF_JSON_INT_DIGITS
 * digits, no leading zero, no fraction or exponent), a float has no exponent and at most
 * FF_JSON_FLOAT_DIGITS digits a part, nesting goes no deeper than FF_JSON_MAX_DEPTH. Declining
 * only costs a trip through the venue's Python adapter.
 *
 * The exchanges send compact JSON and their scanners take no whitespace (FF_JSON_COMPACT);
 * TickDB's frames have spaces after ':' and ',' (Python's json.dumps), and its scanner skips
 * JSON whitespace between any two tokens (FF_JSON_SPACED).
 */
#ifndef FASTFEED_SCAN_JSON_H
#define FASTFEED_SCAN_JSON_H

#include <string.h>

#include "scan.h"

#define FF_JSON_MAX_DEPTH 32
#define FF_JSON_INT_DIGITS 19   /* int64's digits: what ff_json_int checks against its range */
#define FF_JSON_UINT_DIGITS 18  /* any 18 digits fit int64: no range check needed */
#define FF_JSON_FLOAT_DIGITS 18 /* of a float's integer part, and of its fraction */

enum { FF_JSON_COMPACT = 0, FF_JSON_SPACED = 1 };

/* `len` bytes at `s` spell the C string `word`. */
static inline int ff_json_is(const char *s, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len == n && memcmp(s, word, n) == 0;
}

/* Past any JSON whitespace at p (never NULL). */
static inline const char *ff_json_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Past JSON whitespace when `spaced`; p itself when compact. */
static inline const char *ff_json_gap(const char *p, const char *end, int spaced)
{
    return spaced ? ff_json_ws(p, end) : p;
}

/* A string at p (its opening quote): its content span, quotes excluded. */
static inline const char *ff_json_string(const char *p, const char *end, const char **s,
                                         size_t *len)
{
    if (p >= end || *p != '"')
        return NULL;
    const char *start = ++p;
    while (p < end && *p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c > 0x7e || c == '\\')
            return NULL;
        p++;
    }
    if (p >= end)
        return NULL;
    *s = start;
    *len = (size_t)(p - start);
    return p + 1;
}

/* An integer of at most `max_digits` digits (<= FF_JSON_INT_DIGITS), optionally negative. */
static inline const char *ff_json_int(const char *p, const char *end, int max_digits,
                                      int64_t *out)
{
    int neg = 0, digits = 0;
    uint64_t v = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (end - p > 1 && p[0] == '0' && p[1] >= '0' && p[1] <= '9')
        return NULL; /* a leading zero is not JSON */
    while (p < end && *p >= '0' && *p <= '9') {
        if (++digits > max_digits)
            return NULL;
        v = v * 10 + (uint64_t)(*p - '0'); /* 19 digits < 2^64: no wrap */
        p++;
    }
    if (digits == 0 || (p < end && (*p == '.' || *p == 'e' || *p == 'E')))
        return NULL;
    if (v > (uint64_t)INT64_MAX + (uint64_t)neg)
        return NULL; /* outside int64: the adapters call it malformed */
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return p;
}

/* A non-negative integer of at most FF_JSON_UINT_DIGITS digits. */
static inline const char *ff_json_uint(const char *p, const char *end, int64_t *out)
{
    if (p < end && *p == '-')
        return NULL;
    return ff_json_int(p, end, FF_JSON_UINT_DIGITS, out);
}

/* An int64 integer, or a float with a fraction and no exponent: skipped, its value unused. */
static inline const char *ff_json_number(const char *p, const char *end)
{
    int64_t ignored;
    const char *q = ff_json_int(p, end, FF_JSON_INT_DIGITS, &ignored);
    int digits = 0, frac = 0;
    if (q != NULL)
        return q;
    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0') {
        p++;
        digits = 1;
    } else {
        while (p < end && *p >= '0' && *p <= '9' && digits <= FF_JSON_FLOAT_DIGITS) {
            p++;
            digits++;
        }
    }
    if (digits == 0 || digits > FF_JSON_FLOAT_DIGITS || p >= end || *p != '.')
        return NULL;
    p++;
    while (p < end && *p >= '0' && *p <= '9' && frac <= FF_JSON_FLOAT_DIGITS) {
        p++;
        frac++;
    }
    if (frac == 0 || frac > FF_JSON_FLOAT_DIGITS)
        return NULL;
    if (p < end && (*p == 'e' || *p == 'E' || (*p >= '0' && *p <= '9')))
        return NULL;
    return p;
}

/* The literal `word` (true, false, null). */
static inline const char *ff_json_lit(const char *p, const char *end, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(end - p) < n || memcmp(p, word, n) != 0)
        return NULL;
    return p + n;
}

/* "name": at p, the colon right after the string (or after whitespace when spaced); returns the
 * byte after the colon (and its whitespace, when spaced). */
static inline const char *ff_json_key(const char *p, const char *end, int spaced,
                                      const char **name, size_t *len)
{
    if ((p = ff_json_string(p, end, name, len)) == NULL)
        return NULL;
    p = ff_json_gap(p, end, spaced);
    if (p >= end || *p != ':')
        return NULL;
    return ff_json_gap(p + 1, end, spaced);
}

/* After an object member's value at *pp: a comma (0: another member follows, *pp past it and,
 * when spaced, the whitespace after it), the closing brace (1: *pp past it), anything else or
 * a NULL *pp (-1). */
static inline int ff_json_next_member(const char **pp, const char *end, int spaced)
{
    const char *p = *pp;
    if (p == NULL)
        return -1;
    p = ff_json_gap(p, end, spaced);
    if (p >= end || (*p != ',' && *p != '}'))
        return -1;
    if (*p == '}') {
        *pp = p + 1;
        return 1;
    }
    *pp = ff_json_gap(p + 1, end, spaced);
    return 0;
}

/* ff_json_next_member, after noting a known field in *seen: a repeated one (-1) is declined, as
 * the adapter's parser would keep its last value. `bit` 0 is a field nobody reads. */
static inline int ff_json_member_end(const char **pp, const char *end, int spaced,
                                     unsigned *seen, unsigned bit)
{
    if (*seen & bit)
        return -1;
    *seen |= bit;
    return ff_json_next_member(pp, end, spaced);
}

/* Any value of the accepted subset, `depth` deep, whitespace allowed between tokens. */
static inline const char *ff_json_skip(const char *p, const char *end, int depth)
{
    const char *s;
    size_t len;
    int more;
    if (p >= end || depth > FF_JSON_MAX_DEPTH)
        return NULL;
    switch (*p) {
    case '"':
        return ff_json_string(p, end, &s, &len);
    case 't':
        return ff_json_lit(p, end, "true");
    case 'f':
        return ff_json_lit(p, end, "false");
    case 'n':
        return ff_json_lit(p, end, "null");
    case '{':
        p = ff_json_ws(p + 1, end);
        if (p < end && *p == '}')
            return p + 1;
        do {
            if ((p = ff_json_key(p, end, FF_JSON_SPACED, &s, &len)) == NULL)
                return NULL;
            p = ff_json_skip(p, end, depth + 1);
        } while ((more = ff_json_next_member(&p, end, FF_JSON_SPACED)) == 0);
        return more > 0 ? p : NULL;
    case '[':
        p = ff_json_ws(p + 1, end);
        if (p < end && *p == ']')
            return p + 1;
        for (;;) {
            if ((p = ff_json_skip(p, end, depth + 1)) == NULL)
                return NULL;
            p = ff_json_ws(p, end);
            if (p >= end || (*p != ',' && *p != ']'))
                return NULL;
            if (*p++ == ']')
                return p;
            p = ff_json_ws(p, end);
        }
    default:
        return ff_json_number(p, end);
    }
}

/* A field value nobody reads, in compact JSON: a string or an integer (optionally negative) of
 * at most FF_JSON_UINT_DIGITS digits. Anything else (floats, objects, arrays, literals)
 * declines: declining is always safe. */
static inline const char *ff_json_skip_scalar(const char *p, const char *end)
{
    const char *s;
    size_t len;
    int64_t v;
    if (p < end && *p == '"')
        return ff_json_string(p, end, &s, &len);
    return ff_json_int(p, end, FF_JSON_UINT_DIGITS, &v);
}

/* A book side: an array of levels, each an array of exactly `width` strings. */
static inline const char *ff_json_levels(const char *p, const char *end, int width, int spaced)
{
    const char *s;
    size_t len;
    if (p >= end || *p != '[')
        return NULL;
    p = ff_json_gap(p + 1, end, spaced);
    if (p < end && *p == ']')
        return p + 1;
    for (;;) {
        if (p >= end || *p++ != '[')
            return NULL;
        for (int i = 0; i < width; i++) {
            p = ff_json_gap(p, end, spaced);
            if ((p = ff_json_string(p, end, &s, &len)) == NULL)
                return NULL;
            p = ff_json_gap(p, end, spaced);
            if (p >= end || *p++ != (i + 1 < width ? ',' : ']'))
                return NULL;
        }
        p = ff_json_gap(p, end, spaced);
        if (p >= end)
            return NULL;
        if (*p == ']')
            return p + 1;
        if (*p++ != ',')
            return NULL;
        p = ff_json_gap(p, end, spaced);
    }
}

#endif
