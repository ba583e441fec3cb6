/* block_layout.h: the bytes of every GGUF block type and of the packed AWQ/GPTQ/compressed-tensors words, once, for C, CUDA and HIP. */
/*
 * The one definition of these layouts in the tree (scripts/check_blocks.sh fails
 * when a block struct or a QK_* constant is defined anywhere else). What uses it:
 * the CPU quantizers and decoders (quant/q_*.c), lib/dtype.c's traits table
 * (block sizes and bytes come from here, so the two cannot disagree), the packed
 * layouts (formats/packed.c), and the GPU kernels to come (kernels_cuda/, then
 * kernels_hip/ generated from them).
 *
 * Why lib/: formats/ may include only lib/ (DESIGN.md), and formats/packed.c
 * needs the packed-word constants, so a header under quant/ would be a layer
 * violation for formats/ (tests/cli/test_layout.sh fails on it); no new top-level
 * directory is allowed either. lib/ "knows no format", but it already names every
 * GGUF block type with its size and ggml id (dtype.c): this header is the byte
 * layout of those dtypes, with no code, no I/O and no dependency beyond
 * <stdint.h>/<stddef.h>, which is the part of a format a dtype table may know.
 * How a layout is searched for (quantizer constants such as GROUP_MAX_EPS) stays
 * in quant/quant_tables.h.
 *
 * Rules that keep it includable from nvcc/hipcc (C++) as well as C11:
 *  - fixed-width integer fields only; fp16 (and bf16) values are uint16_t bit
 *    patterns, as ggml's C ggml_half, never __half or _Float16;
 *  - no unions or anonymous structs (ggml's d/dm union is two plain fields here:
 *    the same bytes); MUSE_STATIC_ASSERT is _Static_assert in C, static_assert in C++;
 *  - value tables are MUSE_LAYOUT_TABLE: plain static const in C, __device__
 *    constants in device code (host code in a .cu file cannot read them).
 * Checked with (from the repository root):
 *   printf '#include "lib/block_layout.h"\n' >/tmp/bl.cu && nvcc -x cu -arch=sm_80 -I. -c /tmp/bl.cu -o /tmp/bl.o
 *
 * Multi-byte fields are little-endian, as in the files; the hosts and GPUs muse
 * runs on are little-endian, so a uint16_t field holds the file's value. The
 * alignment of a struct is that of its widest field (2 for most, 1 for MXFP4,
 * NVFP4 and IQ1_M, 4 for Q8_K), as in ggml: block pointers into a buffer must
 * respect it (muse_dequantize bounces a misaligned source through an aligned copy).
 * Every struct's size and the offset of every field after the first is asserted against
 * ggml's (ggml-common.h; the sizes are those of GGUF's type table).
 */
#ifndef MUSE_BLOCK_LAYOUT_H
#define MUSE_BLOCK_LAYOUT_H

#ifdef __cplusplus
#include <cstddef>
#include <cstdint>
#define MUSE_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#include <stddef.h>
#include <stdint.h>
#define MUSE_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "block_layout.h: the block structs are the on-disk little-endian layout"
#endif

#if defined(__CUDACC__) || defined(__HIPCC__)
#define MUSE_LAYOUT_TABLE static const __device__
#else
#define MUSE_LAYOUT_TABLE static const
#endif

#define MUSE_BLOCK_SIZE(type, bytes) MUSE_STATIC_ASSERT(sizeof(type) == (bytes), #type " is " #bytes " bytes")
#define MUSE_BLOCK_FIELD(type, field, off) \
	MUSE_STATIC_ASSERT(offsetof(type, field) == (off), #type "." #field " at byte " #off)

/* ---- elements per block ---- */
#define MUSE_QK4_0 32
#define MUSE_QK4_1 32
#define MUSE_QK5_0 32
#define MUSE_QK5_1 32
#define MUSE_QK8_0 32
#define MUSE_QK8_1 32
#define MUSE_QK4_NL 32
#define MUSE_QK_MXFP4 32
#define MUSE_QK_NVFP4 64
#define MUSE_QK_NVFP4_SUB 16 /* elements per NVFP4 scale */
#define MUSE_QK1_0 128
#define MUSE_QK_K 256        /* super-block of the K, IQ and TQ types */
#define MUSE_K_SCALE_SIZE 12 /* bytes of packed 6-bit scales and mins in Q4_K and Q5_K */
#define MUSE_IQ3S_N_SCALE (MUSE_QK_K / 64)

/* ---- legacy types: 32 elements, one scale (and a minimum) ---- */

typedef struct {
	uint16_t d;                  /* scale, fp16 (0.5 bpw) */
	uint8_t qs[MUSE_QK4_0 / 2];  /* 4-bit quants, elem j low nibble of qs[j], elem j+16 high nibble (4 bpw) */
} muse_block_q4_0;
MUSE_BLOCK_SIZE(muse_block_q4_0, 18);
MUSE_BLOCK_FIELD(muse_block_q4_0, qs, 2);

typedef struct {
	uint16_t d;                  /* scale, fp16 (0.5 bpw) */
	uint16_t m;                  /* minimum, fp16 (0.5 bpw) */
	uint8_t qs[MUSE_QK4_1 / 2];  /* 4-bit quants as in Q4_0 (4 bpw) */
} muse_block_q4_1;
MUSE_BLOCK_SIZE(muse_block_q4_1, 20);
MUSE_BLOCK_FIELD(muse_block_q4_1, m, 2);
MUSE_BLOCK_FIELD(muse_block_q4_1, qs, 4);

typedef struct {
	uint16_t d;                  /* scale, fp16 (0.5 bpw) */
	uint8_t qh[4];               /* fifth bits, u32 little-endian, bit j for elem j (1 bpw) */
	uint8_t qs[MUSE_QK5_0 / 2];  /* low 4 bits as in Q4_0 (4 bpw) */
} muse_block_q5_0;
MUSE_BLOCK_SIZE(muse_block_q5_0, 22);
MUSE_BLOCK_FIELD(muse_block_q5_0, qh, 2);
MUSE_BLOCK_FIELD(muse_block_q5_0, qs, 6);

typedef struct {
	uint16_t d;                  /* scale, fp16 (0.5 bpw) */
	uint16_t m;                  /* minimum, fp16 (0.5 bpw) */
	uint8_t qh[4];               /* fifth bits as in Q5_0 (1 bpw) */
	uint8_t qs[MUSE_QK5_1 / 2];  /* low 4 bits as in Q4_0 (4 bpw) */
} muse_block_q5_1;
MUSE_BLOCK_SIZE(muse_block_q5_1, 24);
MUSE_BLOCK_FIELD(muse_block_q5_1, m, 2);
MUSE_BLOCK_FIELD(muse_block_q5_1, qh, 4);
MUSE_BLOCK_FIELD(muse_block_q5_1, qs, 8);

typedef struct {
	uint16_t d;                  /* scale, fp16 (0.5 bpw) */
	int8_t qs[MUSE_QK8_0];       /* signed 8-bit quants (8 bpw) */
} muse_block_q8_0;
MUSE_BLOCK_SIZE(muse_block_q8_0, 34);
MUSE_BLOCK_FIELD(muse_block_q8_0, qs, 2);

/* ggml's activation type for Q4_1/Q5_1 dot products (muse decodes it, never writes it). */
typedef struct {
	uint16_t d;                  /* scale, fp16 (0.5 bpw) */
	uint16_t s;                  /* d * sum(qs), fp16 (0.5 bpw) */
	int8_t qs[MUSE_QK8_1];       /* signed 8-bit quants (8 bpw) */
} muse_block_q8_1;
MUSE_BLOCK_SIZE(muse_block_q8_1, 36);
MUSE_BLOCK_FIELD(muse_block_q8_1, s, 2);
MUSE_BLOCK_FIELD(muse_block_q8_1, qs, 4);

typedef struct {
	uint16_t d;                  /* scale, fp16 (0.125 bpw) */
	uint8_t qs[MUSE_QK1_0 / 8];  /* elem j is +d when bit j%8 of qs[j/8] is set, else -d (1 bpw) */
} muse_block_q1_0;
MUSE_BLOCK_SIZE(muse_block_q1_0, 18);
MUSE_BLOCK_FIELD(muse_block_q1_0, qs, 2);

/* ---- 4-bit codes into a value table ---- */

typedef struct {
	uint16_t d;                  /* scale, fp16 (0.5 bpw) */
	uint8_t qs[MUSE_QK4_NL / 2]; /* 4-bit indices into muse_kvalues_iq4nl, nibbles as in Q4_0 (4 bpw) */
} muse_block_iq4_nl;
MUSE_BLOCK_SIZE(muse_block_iq4_nl, 18);
MUSE_BLOCK_FIELD(muse_block_iq4_nl, qs, 2);

typedef struct {
	uint16_t d;                       /* super-block scale, fp16 (0.0625 bpw) */
	uint16_t scales_h;                /* high 2 bits of the eight 6-bit sub-block scales (0.0625 bpw) */
	uint8_t scales_l[MUSE_QK_K / 64]; /* low 4 bits of the sub-block scales, two a byte (0.125 bpw) */
	uint8_t qs[MUSE_QK_K / 2];        /* 4-bit indices, per 32-element sub-block as in IQ4_NL (4 bpw) */
} muse_block_iq4_xs;
MUSE_BLOCK_SIZE(muse_block_iq4_xs, 136);
MUSE_BLOCK_FIELD(muse_block_iq4_xs, scales_h, 2);
MUSE_BLOCK_FIELD(muse_block_iq4_xs, scales_l, 4);
MUSE_BLOCK_FIELD(muse_block_iq4_xs, qs, 8);

typedef struct {
	uint8_t e;                     /* shared scale, E8M0 (0.25 bpw) */
	uint8_t qs[MUSE_QK_MXFP4 / 2]; /* 4-bit E2M1 codes into muse_kvalues_mxfp4, nibbles as in Q4_0 (4 bpw) */
} muse_block_mxfp4;
MUSE_BLOCK_SIZE(muse_block_mxfp4, 17);
MUSE_BLOCK_FIELD(muse_block_mxfp4, qs, 1);

typedef struct {
	uint8_t d[MUSE_QK_NVFP4 / MUSE_QK_NVFP4_SUB]; /* per-16 scales, UE4M3 (0.5 bpw) */
	uint8_t qs[MUSE_QK_NVFP4 / 2];               /* 4-bit E2M1 codes (4 bpw) */
} muse_block_nvfp4;
MUSE_BLOCK_SIZE(muse_block_nvfp4, 36);
MUSE_BLOCK_FIELD(muse_block_nvfp4, qs, 4);

/* ---- ternary ---- */

typedef struct {
	uint8_t qs[(MUSE_QK_K - 4 * MUSE_QK_K / 64) / 5]; /* 240 trits, five a byte, as ceil(v * 256 / 243) (1.5 bpw) */
	uint8_t qh[MUSE_QK_K / 64];                       /* 16 more, four a byte in the same code (0.125 bpw) */
	uint16_t d;                                       /* scale, fp16 (0.0625 bpw) */
} muse_block_tq1_0;
MUSE_BLOCK_SIZE(muse_block_tq1_0, 54);
MUSE_BLOCK_FIELD(muse_block_tq1_0, qh, 48);
MUSE_BLOCK_FIELD(muse_block_tq1_0, d, 52);

typedef struct {
	uint8_t qs[MUSE_QK_K / 4]; /* 2-bit codes q+1 for q in {-1,0,1} (2 bpw) */
	uint16_t d;                /* scale, fp16 (0.0625 bpw) */
} muse_block_tq2_0;
MUSE_BLOCK_SIZE(muse_block_tq2_0, 66);
MUSE_BLOCK_FIELD(muse_block_tq2_0, d, 64);

/* ---- k-quants: 256-element super-blocks of 16 or 32-element sub-blocks ---- */

typedef struct {
	uint8_t scales[MUSE_QK_K / 16]; /* 4-bit scale (low nibble) and 4-bit min (high nibble) per 16 (0.5 bpw) */
	uint8_t qs[MUSE_QK_K / 4];      /* 2-bit quants (2 bpw) */
	uint16_t d;                     /* super-block scale of the scales, fp16 (0.0625 bpw) */
	uint16_t dmin;                  /* super-block scale of the mins, fp16 (0.0625 bpw) */
} muse_block_q2_k;                      /* 2.625 bpw */
MUSE_BLOCK_SIZE(muse_block_q2_k, 84);
MUSE_BLOCK_FIELD(muse_block_q2_k, qs, 16);
MUSE_BLOCK_FIELD(muse_block_q2_k, d, 80);
MUSE_BLOCK_FIELD(muse_block_q2_k, dmin, 82);

typedef struct {
	uint8_t hmask[MUSE_QK_K / 8]; /* high bit of each 3-bit quant (1 bpw) */
	uint8_t qs[MUSE_QK_K / 4];    /* low 2 bits (2 bpw) */
	uint8_t scales[12];           /* sixteen 6-bit signed scales, biased by 32 (0.375 bpw) */
	uint16_t d;                   /* super-block scale, fp16 (0.0625 bpw) */
} muse_block_q3_k;                    /* 3.4375 bpw */
MUSE_BLOCK_SIZE(muse_block_q3_k, 110);
MUSE_BLOCK_FIELD(muse_block_q3_k, qs, 32);
MUSE_BLOCK_FIELD(muse_block_q3_k, scales, 96);
MUSE_BLOCK_FIELD(muse_block_q3_k, d, 108);

typedef struct {
	uint16_t d;                         /* super-block scale of the 6-bit scales, fp16 (0.0625 bpw) */
	uint16_t dmin;                      /* super-block scale of the 6-bit mins, fp16 (0.0625 bpw) */
	uint8_t scales[MUSE_K_SCALE_SIZE];  /* eight 6-bit scales and eight 6-bit mins, packed (0.375 bpw) */
	uint8_t qs[MUSE_QK_K / 2];          /* 4-bit quants (4 bpw) */
} muse_block_q4_k;                          /* 4.5 bpw */
MUSE_BLOCK_SIZE(muse_block_q4_k, 144);
MUSE_BLOCK_FIELD(muse_block_q4_k, dmin, 2);
MUSE_BLOCK_FIELD(muse_block_q4_k, scales, 4);
MUSE_BLOCK_FIELD(muse_block_q4_k, qs, 16);

typedef struct {
	uint16_t d;                         /* super-block scale of the 6-bit scales, fp16 (0.0625 bpw) */
	uint16_t dmin;                      /* super-block scale of the 6-bit mins, fp16 (0.0625 bpw) */
	uint8_t scales[MUSE_K_SCALE_SIZE];  /* as Q4_K (0.375 bpw) */
	uint8_t qh[MUSE_QK_K / 8];          /* 5th bit of each quant (1 bpw) */
	uint8_t qs[MUSE_QK_K / 2];          /* low 4 bits (4 bpw) */
} muse_block_q5_k;                          /* 5.5 bpw */
MUSE_BLOCK_SIZE(muse_block_q5_k, 176);
MUSE_BLOCK_FIELD(muse_block_q5_k, dmin, 2);
MUSE_BLOCK_FIELD(muse_block_q5_k, scales, 4);
MUSE_BLOCK_FIELD(muse_block_q5_k, qh, 16);
MUSE_BLOCK_FIELD(muse_block_q5_k, qs, 48);

typedef struct {
	uint8_t ql[MUSE_QK_K / 2];     /* low 4 bits (4 bpw) */
	uint8_t qh[MUSE_QK_K / 4];     /* high 2 bits (2 bpw) */
	int8_t scales[MUSE_QK_K / 16]; /* 8-bit signed scale per 16 (0.5 bpw) */
	uint16_t d;                    /* super-block scale, fp16 (0.0625 bpw) */
} muse_block_q6_k;                     /* 6.5625 bpw */
MUSE_BLOCK_SIZE(muse_block_q6_k, 210);
MUSE_BLOCK_FIELD(muse_block_q6_k, qh, 128);
MUSE_BLOCK_FIELD(muse_block_q6_k, scales, 192);
MUSE_BLOCK_FIELD(muse_block_q6_k, d, 208);

/* ggml's activation type for the K and IQ dot products (muse decodes it, never writes it). */
typedef struct {
	float d;                        /* scale, f32 (0.125 bpw) */
	int8_t qs[MUSE_QK_K];           /* signed 8-bit quants (8 bpw) */
	int16_t bsums[MUSE_QK_K / 16];  /* sum of the quants of each 16 (1 bpw) */
} muse_block_q8_k;
MUSE_BLOCK_SIZE(muse_block_q8_k, 292);
MUSE_BLOCK_FIELD(muse_block_q8_k, qs, 4);
MUSE_BLOCK_FIELD(muse_block_q8_k, bsums, 260);

/* ---- i-quants on lattices (grids in quant/iq_grids.h) ---- */

typedef struct {
	uint16_t d;                 /* super-block scale, fp16 (0.0625 bpw) */
	uint16_t qs[MUSE_QK_K / 8]; /* per 32: 4 grid indices (bytes), then u32 of 4x7 sign bits + 4-bit scale (2 bpw) */
} muse_block_iq2_xxs;
MUSE_BLOCK_SIZE(muse_block_iq2_xxs, 66);
MUSE_BLOCK_FIELD(muse_block_iq2_xxs, qs, 2);

typedef struct {
	uint16_t d;                     /* super-block scale, fp16 (0.0625 bpw) */
	uint16_t qs[MUSE_QK_K / 8];     /* per 8: 9-bit grid index | 7 sign bits << 9 (2 bpw) */
	uint8_t scales[MUSE_QK_K / 32]; /* 4-bit scale per 16, two a byte (0.25 bpw) */
} muse_block_iq2_xs;
MUSE_BLOCK_SIZE(muse_block_iq2_xs, 74);
MUSE_BLOCK_FIELD(muse_block_iq2_xs, qs, 2);
MUSE_BLOCK_FIELD(muse_block_iq2_xs, scales, 66);

typedef struct {
	uint16_t d;                     /* super-block scale, fp16 (0.0625 bpw) */
	uint8_t qs[MUSE_QK_K / 4];      /* 32 low bytes of the 10-bit grid indices, then 32 sign bytes (2 bpw) */
	uint8_t qh[MUSE_QK_K / 32];     /* high 2 bits of the grid indices, four a byte (0.25 bpw) */
	uint8_t scales[MUSE_QK_K / 32]; /* 4-bit scale per 16, two a byte (0.25 bpw) */
} muse_block_iq2_s;
MUSE_BLOCK_SIZE(muse_block_iq2_s, 82);
MUSE_BLOCK_FIELD(muse_block_iq2_s, qs, 2);
MUSE_BLOCK_FIELD(muse_block_iq2_s, qh, 66);
MUSE_BLOCK_FIELD(muse_block_iq2_s, scales, 74);

typedef struct {
	uint16_t d;                    /* super-block scale, fp16 (0.0625 bpw) */
	uint8_t qs[3 * MUSE_QK_K / 8]; /* 64 grid indices (one per 4), then per 32 a u32: 4x7 signs, 4-bit scale (3 bpw) */
} muse_block_iq3_xxs;
MUSE_BLOCK_SIZE(muse_block_iq3_xxs, 98);
MUSE_BLOCK_FIELD(muse_block_iq3_xxs, qs, 2);

typedef struct {
	uint16_t d;                        /* super-block scale, fp16 (0.0625 bpw) */
	uint8_t qs[MUSE_QK_K / 4];         /* low bytes of the 9-bit grid indices, one per 4 (2 bpw) */
	uint8_t qh[MUSE_QK_K / 32];        /* their high bits, one a bit (0.25 bpw) */
	uint8_t signs[MUSE_QK_K / 8];      /* one sign bit per element (1 bpw) */
	uint8_t scales[MUSE_IQ3S_N_SCALE]; /* 4-bit scale per 32, two a byte (0.125 bpw) */
} muse_block_iq3_s;
MUSE_BLOCK_SIZE(muse_block_iq3_s, 110);
MUSE_BLOCK_FIELD(muse_block_iq3_s, qs, 2);
MUSE_BLOCK_FIELD(muse_block_iq3_s, qh, 66);
MUSE_BLOCK_FIELD(muse_block_iq3_s, signs, 74);
MUSE_BLOCK_FIELD(muse_block_iq3_s, scales, 106);

typedef struct {
	uint16_t d;                  /* super-block scale, fp16 (0.0625 bpw) */
	uint8_t qs[MUSE_QK_K / 8];   /* low bytes of the 11-bit grid indices, one per 8 (1 bpw) */
	uint16_t qh[MUSE_QK_K / 32]; /* per 32: 4x3 high index bits, 3-bit scale << 12, delta sign << 15 (0.5 bpw) */
} muse_block_iq1_s;
MUSE_BLOCK_SIZE(muse_block_iq1_s, 50);
MUSE_BLOCK_FIELD(muse_block_iq1_s, qs, 2);
MUSE_BLOCK_FIELD(muse_block_iq1_s, qh, 34);

typedef struct {
	uint8_t qs[MUSE_QK_K / 8];      /* low bytes of the 11-bit grid indices, one per 8 (1 bpw) */
	uint8_t qh[MUSE_QK_K / 16];     /* per 16: two (3 high index bits + delta sign) nibbles (0.5 bpw) */
	uint8_t scales[MUSE_QK_K / 32]; /* 4 u16: 3-bit scale per 16 in bits 0..11, fp16 scale in top nibbles (0.25 bpw) */
} muse_block_iq1_m;
MUSE_BLOCK_SIZE(muse_block_iq1_m, 56);
MUSE_BLOCK_FIELD(muse_block_iq1_m, qh, 32);
MUSE_BLOCK_FIELD(muse_block_iq1_m, scales, 48);

/* ---- value tables the codes index ---- */

/* The IQ4_NL/IQ4_XS non-linear levels (ggml's kvalues_iq4nl), ascending. */
MUSE_LAYOUT_TABLE int8_t muse_kvalues_iq4nl[16] = {
	-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

/* E2M1 values doubled (ggml's kvalues_mxfp4): code c is sign (bit 3) and magnitude 0,0.5,..,6 times 2. */
MUSE_LAYOUT_TABLE int8_t muse_kvalues_mxfp4[16] = {
	0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12,
};

/*
 * ---- packed integer layouts (formats/packed.c; reference/FORMATS.md §2c-2e) ----
 * One nn.Linear [N = out_features, K = in_features] of b-bit codes q with
 * per-group scales s and zero points z, w = (q - z) * s. All three store the
 * codes in little-endian 32-bit words:
 *  - AutoAWQ GEMM (4-bit only): qweight [K][N/8], word c of row k holds output
 *    columns 8c + muse_awq_order[i] in nibble i; qzeros [G][N/8] the same way.
 *  - GPTQ v1: qweight [K*b/32][N], each column one LSB-first bit stream down K
 *    (3-bit codes straddle words); qzeros [G][N*b/32] one stream along N per
 *    group, holding z - MUSE_GPTQ_V1_ZERO_BIAS (so z = 0 is not storable).
 *  - compressed-tensors pack-quantized: weight_packed [N][MUSE_PACKED_WORDS(K, b)],
 *    each row one LSB-first stream; weight_zero_point, when asymmetric,
 *    [MUSE_PACKED_WORDS(N, b)][G], one stream down N per group.
 * Symmetric grids use z = MUSE_PACKED_SYM_ZERO(b) in all three.
 */
#define MUSE_PACK_WORD_BITS 32
#define MUSE_AWQ_BITS 4
#define MUSE_AWQ_PACK (MUSE_PACK_WORD_BITS / MUSE_AWQ_BITS) /* codes a word: 8 */
#define MUSE_GPTQ_V1_ZERO_BIAS 1u
#define MUSE_PACKED_SYM_ZERO(bits) (1u << ((bits) - 1))
/* Words of a dense LSB-first stream of n b-bit values (n unsigned 64-bit). */
#define MUSE_PACKED_WORDS(n, bits) (((n) * (unsigned)(bits) + (MUSE_PACK_WORD_BITS - 1)) / MUSE_PACK_WORD_BITS)

/* AutoAWQ's GEMM kernel dequantizes a word's nibbles in this order of columns. */
MUSE_LAYOUT_TABLE uint8_t muse_awq_order[MUSE_AWQ_PACK] = { 0, 2, 4, 6, 1, 3, 5, 7 };

#endif
