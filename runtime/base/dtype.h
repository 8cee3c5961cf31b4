/* Element types of tensors in files and in memory. */
#ifndef BRT_DTYPE_H
#define BRT_DTYPE_H

#include <stddef.h>

typedef enum brt_dtype {
    BRT_DT_F32 = 0,
    BRT_DT_F16,
    BRT_DT_BF16,
    BRT_DT_F64,
    BRT_DT_I64,
    BRT_DT_I32,
    BRT_DT_I16,
    BRT_DT_I8,
    BRT_DT_U8,
    BRT_DT_BOOL,
    BRT_DT_COUNT
} brt_dtype;

const char *brt_dtype_name(brt_dtype dt);
size_t brt_dtype_size(brt_dtype dt);

/* f32 <-> bf16 with round-to-nearest-even (NaN kept quiet), as torch's .to(bfloat16). */
static inline unsigned short brt_f32_to_bf16(float f)
{
    unsigned int u;
    __builtin_memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (unsigned short)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}
static inline float brt_bf16_to_f32(unsigned short h)
{
    unsigned int u = (unsigned int)h << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
}

#endif
