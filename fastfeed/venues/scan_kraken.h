/* Kraken v2 scanner for the recorder's hot path (the contract is in scan.h).
 *
 * Kraken's book and trade messages carry no sequence numbers (a lost book message shows as a
 * checksum mismatch, checked in the derived part: fastfeed/derive/kraken_book.py), so there is
 * nothing for the sink to check per frame: the scanner declines every frame.
 */
#ifndef FASTFEED_SCAN_KRAKEN_H
#define FASTFEED_SCAN_KRAKEN_H

#include "scan.h"

static int ff_scan_kraken(const char *buf, size_t n, ff_scan_t *out)
{
    (void)buf;
    (void)n;
    (void)out;
    return FF_SCAN_DECLINE;
}

#endif
