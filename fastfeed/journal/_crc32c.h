/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78) with the standard pre/post inversion:
 * ff_crc32c(seed, p, n) equals crc32c(data, value=seed) of common libraries (google-crc32c).
 *
 * The hardware path uses the SSE4.2 crc32 instruction, chosen at run time with
 * __builtin_cpu_supports so the build needs no -msse4.2 and still runs on older CPUs; other
 * architectures get the table-driven software path (slicing-by-8).
 */
#ifndef FASTFEED_CRC32C_H
#define FASTFEED_CRC32C_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fastfeed's journal format is little-endian and the code stores fields natively"
#endif

static uint32_t ff_crc32c_table[8][256];
static int ff_crc32c_have_hw = 0;

static void ff_crc32c_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        ff_crc32c_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = ff_crc32c_table[0][i];
        for (int t = 1; t < 8; t++) {
            c = ff_crc32c_table[0][c & 0xFF] ^ (c >> 8);
            ff_crc32c_table[t][i] = c;
        }
    }
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    ff_crc32c_have_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#endif
}

static uint32_t ff_crc32c_sw(uint32_t seed, const unsigned char *p, size_t n) {
    uint32_t c = ~seed;
    while (n && ((uintptr_t)p & 7)) {
        c = ff_crc32c_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= c;
        c = ff_crc32c_table[7][w & 0xFF] ^ ff_crc32c_table[6][(w >> 8) & 0xFF] ^
            ff_crc32c_table[5][(w >> 16) & 0xFF] ^ ff_crc32c_table[4][(w >> 24) & 0xFF] ^
            ff_crc32c_table[3][(w >> 32) & 0xFF] ^ ff_crc32c_table[2][(w >> 40) & 0xFF] ^
            ff_crc32c_table[1][(w >> 48) & 0xFF] ^ ff_crc32c_table[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) c = ff_crc32c_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return ~c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
__attribute__((target("sse4.2"))) static uint32_t ff_crc32c_hw(uint32_t seed, const unsigned char *p,
                                                              size_t n) {
    uint64_t c = (uint32_t)~seed;
    while (n && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        n -= 8;
    }
    while (n--) c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#else
static uint32_t ff_crc32c_hw(uint32_t seed, const unsigned char *p, size_t n) {
    return ff_crc32c_sw(seed, p, n);
}
#endif

/* The dispatching entry point used by the journal. */
static inline uint32_t ff_crc32c(uint32_t seed, const unsigned char *p, size_t n) {
    return ff_crc32c_have_hw ? ff_crc32c_hw(seed, p, n) : ff_crc32c_sw(seed, p, n);
}

/* Record length is published last with release semantics, read with acquire (see _wal.pxd). */
static inline void ff_store_release_u32(uint32_t *p, uint32_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
static inline uint32_t ff_load_acquire_u32(const uint32_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

#endif
