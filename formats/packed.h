/* packed.h: integer-quantized linear layers and their published packed layouts (AutoAWQ GEMM, GPTQ v1, compressed-tensors pack-quantized). */
#ifndef MUSE_PACKED_H
#define MUSE_PACKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/dtype.h"
#include "../lib/status.h"

/*
 * One quantized nn.Linear (weight [rows = out_features N, cols = in_features K])
 * in a layout-neutral form: unsigned codes, per-(row, group) scale and
 * unsigned zero point. Dequantization is w[r][k] = (q[r][k] - z[r][g]) * s[r][g]
 * with g = g_idx ? g_idx[k] : k / group. Symmetric grids use z = 2^(bits-1).
 * Every layout below is a lossless repacking of this struct (scales are
 * rounded to the layout's scale dtype before codes are chosen, so nothing
 * is lost when they are stored). All arrays are owned.
 */
typedef struct muse_qlinear {
	uint64_t rows, cols; /* N, K */
	int bits;            /* 2, 3, 4 or 8 */
	uint64_t group;      /* columns per group; K for per-channel (group_size -1) */
	uint64_t n_groups;   /* ceil(K / group) */
	bool sym;            /* every zero is 2^(bits-1) */
	uint8_t *q;          /* [rows][cols] codes 0 .. 2^bits-1, original column order */
	float *scales;       /* [rows][n_groups] */
	uint8_t *zeros;      /* [rows][n_groups] 0 .. 2^bits-1 */
	int32_t *g_idx;      /* [cols] group of each column, or NULL for k / group */
} muse_qlinear;

/* Allocates the arrays (zeroed) for rows x cols; group_size -1 means per-channel. */
muse_status muse_qlinear_alloc(muse_qlinear *q, uint64_t rows, uint64_t cols, int bits, int64_t group_size,
			       bool sym, bool with_g_idx, muse_err *err);
void muse_qlinear_free(muse_qlinear *q); /* frees the arrays and zeroes *q; NULL is a no-op */
/* muse's own dequantization into w[rows][cols] (F32): (q - z) * s. */
void muse_qlinear_dequant(const muse_qlinear *q, float *w);
/* Group of column k. */
static inline uint64_t muse_qlinear_group_of(const muse_qlinear *q, uint64_t k)
{
	return q->g_idx ? (uint64_t)q->g_idx[k] : k / q->group;
}

typedef enum muse_packed_kind {
	MUSE_PACKED_AWQ,  /* AutoAWQ GEMM: qweight [K, N/8], qzeros [K/g, N/8], scales [K/g, N] */
	MUSE_PACKED_GPTQ, /* GPTQ v1: qweight [K*b/32, N], qzeros [G, N*b/32] (z-1), scales [G, N], g_idx [K] */
	MUSE_PACKED_CT,   /* compressed-tensors pack-quantized: weight_packed, weight_scale, [weight_zero_point], weight_shape */
} muse_packed_kind;

const char *muse_packed_kind_name(muse_packed_kind k); /* "awq", "gptq", "compressed-tensors" */

#define MUSE_PACKED_MAX 5

/* One tensor of a packed linear: the name is the module prefix + "." + suffix. */
typedef struct muse_packed_tensor {
	const char *suffix; /* static: "qweight", "qzeros", "scales", "g_idx", "weight_packed", ... */
	muse_dtype dtype;
	int ndim;
	uint64_t shape[2];
	uint8_t *data;      /* owned, little-endian, dense */
	size_t nbytes;
} muse_packed_tensor;

typedef struct muse_packed_set {
	muse_packed_tensor t[MUSE_PACKED_MAX];
	int n;
} muse_packed_set;

void muse_packed_set_free(muse_packed_set *s);
/* The tensor with this suffix, or NULL. */
const muse_packed_tensor *muse_packed_find(const muse_packed_set *s, const char *suffix);

/*
 * Whether q can be stored in the layout, with the reason in err when not:
 * AWQ is 4-bit, no g_idx, K % group == 0, N % 8 == 0; GPTQ needs K*bits and
 * N*bits multiples of 32; compressed-tensors needs symmetric zeros equal to
 * 2^(bits-1) when sym and monotonic groups (it removed actorder "group" and
 * weight_g_idx in 2026-08; act-order with static groups is its "weight"). GPTQ v1 cannot store a zero point of 0 (readers add 1
 * to a stored z-1 that wrapped to 2^bits-1); quantizers avoid it with
 * zero_min = 1 (quant/rtn.h).
 */
muse_status muse_packed_check(muse_packed_kind kind, const muse_qlinear *q, muse_err *err);

/*
 * Packs q into the layout's tensors. scale_dtype: F16 for AWQ/GPTQ (their
 * kernels are fp16), F16/BF16/F32 for compressed-tensors (the model dtype).
 * The scales are written as the nearest scale_dtype value; quantizers round
 * them first so the stored model is exactly q.
 */
muse_status muse_packed_encode(muse_packed_kind kind, const muse_qlinear *q, muse_dtype scale_dtype,
			       muse_packed_set *out, muse_err *err);

/*
 * The tensors muse_packed_encode would produce for a rows x cols layer, with
 * shapes and dtypes filled and data NULL (writers declare tensors before
 * any data exists). Same checks on shapes as muse_packed_check.
 */
muse_status muse_packed_shapes(muse_packed_kind kind, uint64_t rows, uint64_t cols, int bits, int64_t group_size,
			       bool sym, bool has_g_idx, muse_dtype scale_dtype, muse_packed_set *out, muse_err *err);

/*
 * The inverse: reads the layout's tensors (as a checkpoint holds them) back
 * into a fresh muse_qlinear; bits and group_size come from the config. Every
 * shape is checked against the others; name is used in messages.
 */
muse_status muse_packed_decode(muse_packed_kind kind, const muse_packed_set *in, int bits, int64_t group_size,
			       bool sym, const char *name, muse_qlinear *out, muse_err *err);

/* What goes into config.json "quantization_config" (and quantize_config.json for GPTQ). */
typedef struct muse_packed_config {
	muse_packed_kind kind;
	int bits;
	int64_t group_size;       /* -1 per-channel */
	bool sym;
	bool desc_act;            /* act-order was used (GPTQ desc_act unless static_groups; compressed-tensors actorder "weight") */
	bool static_groups;       /* act-order with group grids fixed first: g_idx stays k / group, so GPTQ writes desc_act false */
	bool true_sequential;     /* gptq: q/k/v, o, gate/up, down measured in turn (--true-sequential) */
	double damp_percent;
	const char *method;       /* "rtn", "gptq", "awq": recorded in meta/quantizer fields */
	const char *const *ignore; /* module names kept in high precision (lm_head, routers), n_ignore of them */
	size_t n_ignore;
	muse_dtype scale_dtype;
} muse_packed_config;

/* The quantization_config object as compact JSON (malloc'd, NUL-terminated) into *json. */
muse_status muse_packed_config_json(const muse_packed_config *c, char **json, muse_err *err);

#endif
