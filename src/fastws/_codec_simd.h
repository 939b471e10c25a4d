/* Masking and UTF-8 validation kernels for _codec.pyx.
 *
 * Masking (RFC 6455 §5.3) XORs the payload with a repeating 4-byte key. It is
 * done 32 bytes at a time with AVX2 where the CPU has it (chosen at run time),
 * 16 at a time with SSE2 on any x86-64, 8 at a time elsewhere, and byte by byte
 * only for the tail.
 */
#ifndef FASTWS_CODEC_SIMD_H
#define FASTWS_CODEC_SIMD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <emmintrin.h>
#define FASTWS_HAVE_SSE2 1
#if defined(__GNUC__) || defined(__clang__)
#include <immintrin.h>
#define FASTWS_HAVE_AVX2_DISPATCH 1
#endif
#endif

#if defined(FASTWS_HAVE_AVX2_DISPATCH)
__attribute__((target("avx2"))) static size_t
fastws_mask_avx2(const uint8_t *src, uint8_t *dst, size_t n, uint64_t key8)
{
    __m256i key = _mm256_set1_epi64x((long long)key8);
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(src + i + 32));
        __m256i c = _mm256_loadu_si256((const __m256i *)(src + i + 64));
        __m256i d = _mm256_loadu_si256((const __m256i *)(src + i + 96));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_xor_si256(a, key));
        _mm256_storeu_si256((__m256i *)(dst + i + 32), _mm256_xor_si256(b, key));
        _mm256_storeu_si256((__m256i *)(dst + i + 64), _mm256_xor_si256(c, key));
        _mm256_storeu_si256((__m256i *)(dst + i + 96), _mm256_xor_si256(d, key));
    }
    for (; i + 32 <= n; i += 32) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_xor_si256(a, key));
    }
    return i;
}

static int fastws_cpu_has_avx2 = -1;
#endif

#if defined(FASTWS_HAVE_SSE2)
static size_t
fastws_mask_sse2(const uint8_t *src, uint8_t *dst, size_t n, uint64_t key8)
{
    __m128i key = _mm_set1_epi64x((long long)key8);
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(src + i + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(src + i + 32));
        __m128i d = _mm_loadu_si128((const __m128i *)(src + i + 48));
        _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(a, key));
        _mm_storeu_si128((__m128i *)(dst + i + 16), _mm_xor_si128(b, key));
        _mm_storeu_si128((__m128i *)(dst + i + 32), _mm_xor_si128(c, key));
        _mm_storeu_si128((__m128i *)(dst + i + 48), _mm_xor_si128(d, key));
    }
    for (; i + 16 <= n; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
        _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(a, key));
    }
    return i;
}
#endif

/* XOR n bytes of src into dst (which may be src) with key, starting at key
 * byte `phase` (0-3): the position in the key where a partial frame left off. */
static void
fastws_mask(const uint8_t *src, uint8_t *dst, size_t n, const uint8_t *key4, unsigned phase)
{
    uint8_t key[8];
    uint64_t key8;
    size_t i = 0;
    unsigned j;
    for (j = 0; j < 8; j++)
        key[j] = key4[(phase + j) & 3];
    memcpy(&key8, key, 8);
    if (n >= 32) {
#if defined(FASTWS_HAVE_AVX2_DISPATCH)
        if (fastws_cpu_has_avx2 < 0) {
            __builtin_cpu_init();
            fastws_cpu_has_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
        }
        if (fastws_cpu_has_avx2)
            i = fastws_mask_avx2(src, dst, n, key8);
        else
#endif
#if defined(FASTWS_HAVE_SSE2)
            i = fastws_mask_sse2(src, dst, n, key8);
#endif
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        memcpy(&word, src + i, 8);
        word ^= key8;
        memcpy(dst + i, &word, 8);
    }
    /* i is a multiple of 8 here, so the key lines up again at key[0]. */
    for (; i < n; i++)
        dst[i] = src[i] ^ key[i & 3];
}

/* Incremental UTF-8 validation (RFC 3629; Unicode Table 3-7).
 *
 * The state packs what the next byte must be: the number of continuation bytes
 * still expected (low byte) and the allowed range of the next one (lo, hi).
 * State 0 means "between characters". A byte is rejected as soon as no valid
 * sequence can contain it, so bad input fails on the byte that makes it bad.
 * Returns 1 if s[0:n] continues validly, 0 otherwise. */
#define FASTWS_UTF8_NEED(count, lo, hi) ((uint32_t)(count) | ((uint32_t)(lo) << 8) | ((uint32_t)(hi) << 16))

static int
fastws_utf8_feed(uint32_t *state, const uint8_t *s, size_t n)
{
    uint32_t st = *state;
    size_t i = 0;
    while (i < n) {
        uint8_t c;
        if (st == 0) {
            while (i + 8 <= n) {
                uint64_t word;
                memcpy(&word, s + i, 8);
                if (word & 0x8080808080808080ULL)
                    break;
                i += 8;
            }
            if (i >= n)
                break;
            c = s[i++];
            if (c < 0x80)
                continue;
            if (c < 0xC2)
                return 0; /* stray continuation byte or overlong 2-byte form */
            else if (c < 0xE0)
                st = FASTWS_UTF8_NEED(1, 0x80, 0xBF);
            else if (c == 0xE0)
                st = FASTWS_UTF8_NEED(2, 0xA0, 0xBF); /* no overlong 3-byte forms */
            else if (c == 0xED)
                st = FASTWS_UTF8_NEED(2, 0x80, 0x9F); /* no UTF-16 surrogates */
            else if (c < 0xF0)
                st = FASTWS_UTF8_NEED(2, 0x80, 0xBF);
            else if (c == 0xF0)
                st = FASTWS_UTF8_NEED(3, 0x90, 0xBF); /* no overlong 4-byte forms */
            else if (c < 0xF4)
                st = FASTWS_UTF8_NEED(3, 0x80, 0xBF);
            else if (c == 0xF4)
                st = FASTWS_UTF8_NEED(3, 0x80, 0x8F); /* nothing above U+10FFFF */
            else
                return 0;
        } else {
            uint32_t left = (st & 0xFF) - 1;
            c = s[i++];
            if (c < ((st >> 8) & 0xFF) || c > ((st >> 16) & 0xFF))
                return 0;
            st = left ? FASTWS_UTF8_NEED(left, 0x80, 0xBF) : 0;
        }
    }
    *state = st;
    return 1;
}

#endif /* FASTWS_CODEC_SIMD_H */
