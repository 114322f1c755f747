/* common.cl - prepended to every kernel program: shared helpers and defaults. */
#ifndef CLT_COMMON_CL
#define CLT_COMMON_CL

/* Counter-based hash -> uniform float in [0,1): integer-only, so every device draws the same numbers. */
inline uint clt_hash32(uint x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}
inline float clt_uniform(uint seed_lo, uint seed_hi, uint counter, uint index)
{
    uint h = clt_hash32(index ^ clt_hash32(counter ^ clt_hash32(seed_lo ^ clt_hash32(seed_hi))));
    return (float)(h >> 8) * (1.0f / 16777216.0f);
}

#endif
