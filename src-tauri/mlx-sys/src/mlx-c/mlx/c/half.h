/* Copyright © 2023-2024 Apple Inc. */

#ifndef MLX_HALF_H
#define MLX_HALF_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__ARM_FEATURE_FP16_SCALAR_ARITHMETIC) || defined(__aarch64__)
#define HAS_FLOAT16
#include <arm_fp16.h>
typedef __fp16 float16_t;
#endif

#if defined(__ARM_FEATURE_BF16) || defined(__aarch64__)
#define HAS_BFLOAT16
#include <arm_bf16.h>
typedef __bf16 bfloat16_t;
#endif

/* HEADROOM PATCH (PATCHES.md): x86 has no arithmetic __fp16/__bf16. mlx-c passes
 * halves only by pointer, so 16-bit storage types do: uint16_t for the C++ that g++
 * compiles; for clang's C, which bindgen reads, clang's storage-only __fp16, which
 * bindgen turns into the same `__BindgenFloat16` struct as on Apple (and uint16_t
 * for bfloat16, as it turns __bf16), so mlx-rs sees the types it sees on a Mac. */
#if !defined(__APPLE__) && !defined(HAS_FLOAT16)
#define HAS_FLOAT16
#include <stdint.h>
#if defined(__clang__) && !defined(__cplusplus)
typedef __fp16 float16_t;
#else
typedef uint16_t float16_t;
#endif
#endif
#if !defined(__APPLE__) && !defined(HAS_BFLOAT16)
#define HAS_BFLOAT16
#include <stdint.h>
typedef uint16_t bfloat16_t;
#endif

#ifdef __cplusplus
}
#endif

#endif
