/* pickle.c: the data-only pickle VM behind the PyTorch reader (opcode and GLOBAL allowlists as torch's weights_only). */
#include "pickle.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/checked.h"
#include "../lib/strmap.h"
#include "../lib/utf8.h"

/* ---- objects ---- */

typedef enum pk_type {
	PK_NONE,
	PK_BOOL,
	PK_INT,
	PK_FLOAT,
	PK_STR,
	PK_TUPLE,
	PK_LIST,
	PK_DICT, /* items hold key, value, key, value, ... */
	PK_SET,  /* only ever empty: torch's unpickler has no ADDITEMS */
	PK_GLOBAL,
	PK_STORAGE,
	PK_TENSOR,
} pk_type;

static const char *const type_names[] = {
	"None", "bool", "int", "float", "str", "tuple", "list", "dict", "set", "global", "storage", "tensor",
};

typedef enum g_kind {
	G_ODICT,          /* collections.OrderedDict */
	G_REBUILD,        /* torch._utils._rebuild_tensor(storage, offset, size, stride) */
	G_REBUILD_V2,     /* ..._v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) */
	G_REBUILD_V3,     /* ..._v3(storage, offset, size, stride, requires_grad, hooks, dtype[, metadata]) */
	G_PARAM,          /* _rebuild_parameter(data, requires_grad, hooks) */
	G_PARAM_STATE,    /* _rebuild_parameter_with_state(data, requires_grad, hooks, state) */
	G_FROM_TYPE_V2,   /* torch._tensor._rebuild_from_type_v2(func, new_type, args, state) */
	G_TENSOR_CLS,     /* torch.Tensor */
	G_PARAM_CLS,      /* torch.nn.parameter.Parameter */
	G_STORAGE,        /* typed storage class; dtype says which */
	G_UNTYPED,        /* torch.storage.UntypedStorage */
	G_DTYPE,          /* a torch dtype object */
	G_REFUSED,        /* known to torch, not supported here: refused with a reason */
} g_kind;

typedef struct pk_global {
	const char *name; /* module.name */
	g_kind kind;
	muse_dtype dtype; /* G_STORAGE / G_DTYPE; INVALID for known-but-unsupported element types */
	const char *why;  /* G_REFUSED */
} pk_global;

#define ST(n, d) { "torch." n "Storage", G_STORAGE, d, NULL }, { "torch.cuda." n "Storage", G_STORAGE, d, NULL }
#define DT(n, d) { "torch." n, G_DTYPE, d, NULL }
#define NO(n, why) { n, G_REFUSED, MUSE_DT_INVALID, why }

static const pk_global globals_table[] = {
	{ "collections.OrderedDict", G_ODICT, 0, NULL },
	{ "torch._utils._rebuild_tensor", G_REBUILD, 0, NULL },
	{ "torch._utils._rebuild_tensor_v2", G_REBUILD_V2, 0, NULL },
	{ "torch._utils._rebuild_tensor_v3", G_REBUILD_V3, 0, NULL },
	{ "torch._utils._rebuild_parameter", G_PARAM, 0, NULL },
	{ "torch._utils._rebuild_parameter_with_state", G_PARAM_STATE, 0, NULL },
	{ "torch._tensor._rebuild_from_type_v2", G_FROM_TYPE_V2, 0, NULL },
	{ "torch.Tensor", G_TENSOR_CLS, 0, NULL },
	{ "torch.nn.parameter.Parameter", G_PARAM_CLS, 0, NULL },
	{ "torch.storage.UntypedStorage", G_UNTYPED, MUSE_DT_U8, NULL },
	ST("Double", MUSE_DT_F64), ST("Float", MUSE_DT_F32), ST("Half", MUSE_DT_F16), ST("BFloat16", MUSE_DT_BF16),
	ST("Long", MUSE_DT_I64), ST("Int", MUSE_DT_I32), ST("Short", MUSE_DT_I16), ST("Char", MUSE_DT_I8),
	ST("Byte", MUSE_DT_U8), ST("Bool", MUSE_DT_BOOL), ST("ComplexFloat", MUSE_DT_C64),
	ST("ComplexDouble", MUSE_DT_C128),
	/* Quantized storages are legal torch but their bytes mean nothing without qparams. */
	{ "torch.QInt8Storage", G_STORAGE, MUSE_DT_INVALID, NULL },
	{ "torch.QUInt8Storage", G_STORAGE, MUSE_DT_INVALID, NULL },
	{ "torch.QInt32Storage", G_STORAGE, MUSE_DT_INVALID, NULL },
	{ "torch.QUInt4x2Storage", G_STORAGE, MUSE_DT_INVALID, NULL },
	{ "torch.QUInt2x4Storage", G_STORAGE, MUSE_DT_INVALID, NULL },
	DT("float64", MUSE_DT_F64), DT("float32", MUSE_DT_F32), DT("float16", MUSE_DT_F16),
	DT("bfloat16", MUSE_DT_BF16), DT("float8_e4m3fn", MUSE_DT_F8_E4M3), DT("float8_e5m2", MUSE_DT_F8_E5M2),
	DT("float8_e4m3fnuz", MUSE_DT_F8_E4M3FNUZ), DT("float8_e5m2fnuz", MUSE_DT_F8_E5M2FNUZ),
	DT("float8_e8m0fnu", MUSE_DT_F8_E8M0), DT("int8", MUSE_DT_I8), DT("int16", MUSE_DT_I16),
	DT("int32", MUSE_DT_I32), DT("int64", MUSE_DT_I64), DT("uint8", MUSE_DT_U8), DT("uint16", MUSE_DT_U16),
	DT("uint32", MUSE_DT_U32), DT("uint64", MUSE_DT_U64), DT("bool", MUSE_DT_BOOL),
	DT("complex64", MUSE_DT_C64), DT("complex128", MUSE_DT_C128),
	/* dtypes torch knows and muse cannot hold: accepted as names, refused when a tensor uses them */
	DT("complex32", MUSE_DT_INVALID), DT("bcomplex32", MUSE_DT_INVALID), DT("float4_e2m1fn_x2", MUSE_DT_INVALID),
	DT("qint8", MUSE_DT_INVALID), DT("quint8", MUSE_DT_INVALID), DT("qint32", MUSE_DT_INVALID),
	DT("quint4x2", MUSE_DT_INVALID), DT("quint2x4", MUSE_DT_INVALID), DT("bits1x8", MUSE_DT_INVALID),
	DT("bits2x4", MUSE_DT_INVALID), DT("bits4x2", MUSE_DT_INVALID), DT("bits8", MUSE_DT_INVALID),
	DT("bits16", MUSE_DT_INVALID), DT("uint1", MUSE_DT_INVALID), DT("uint2", MUSE_DT_INVALID),
	DT("uint3", MUSE_DT_INVALID), DT("uint4", MUSE_DT_INVALID), DT("uint5", MUSE_DT_INVALID),
	DT("uint6", MUSE_DT_INVALID), DT("uint7", MUSE_DT_INVALID), DT("int1", MUSE_DT_INVALID),
	DT("int2", MUSE_DT_INVALID), DT("int3", MUSE_DT_INVALID), DT("int4", MUSE_DT_INVALID),
	DT("int5", MUSE_DT_INVALID), DT("int6", MUSE_DT_INVALID), DT("int7", MUSE_DT_INVALID),
	NO("torch._utils._rebuild_qtensor", "quantized tensors are not supported"),
	NO("torch._utils._rebuild_sparse_tensor", "sparse tensors are not supported"),
	NO("torch._utils._rebuild_meta_tensor_no_storage", "meta tensors have no data"),
	NO("torch._utils._rebuild_wrapper_subclass", "tensor subclasses are not supported"),
	NO("torch._utils._rebuild_device_tensor_from_numpy", "numpy-backed tensors are not supported"),
	NO("torch._utils._rebuild_device_tensor_from_cpu_tensor", "device tensors are not supported"),
	NO("torch.storage.TypedStorage", "TypedStorage objects are not supported"),
};

#undef ST
#undef DT
#undef NO

typedef struct pk_obj pk_obj;

typedef struct pk_tensor {
	pk_obj *storage;
	muse_dtype dtype;
	const char *dtype_name; /* for refusing unsupported dtypes by name */
	int ndim;
	uint64_t offset;
	uint64_t size[MUSE_MAX_DIMS], stride[MUSE_MAX_DIMS];
} pk_tensor;

struct pk_obj {
	uint8_t type;
	bool ordered;    /* dict built by OrderedDict() */
	uint32_t n, cap; /* tuple/list/set items; dict: 2n slots used */
	uint64_t pos;    /* pickle byte that made it */
	union {
		int64_t i;
		double f;
		bool b;
		struct {
			const char *p; /* borrowed from the pickle bytes, validated UTF-8 */
			size_t len;
		} s;
		pk_obj **items;
		const pk_global *g;
		size_t storage; /* index into the result's storages */
		pk_tensor *t;
	} u;
};

#define CHUNK 1024
typedef struct pk_chunk {
	struct pk_chunk *next;
	size_t used;
	pk_obj objs[CHUNK];
} pk_chunk;

typedef struct pk_vm {
	const uint8_t *p;
	size_t n, pos, op_pos;
	const muse_pickle_ctx *ctx;
	muse_err *err;
	int proto;
	uint64_t mem;

	pk_chunk *chunks;
	pk_obj none, yes, no, small[256];

	pk_obj **stack;
	size_t sp, stack_cap;
	size_t marks[MUSE_PICKLE_MAX_MARKS];
	size_t n_marks;

	/* memo: open addressing, key+1 (0 = empty slot) */
	uint64_t *memo_keys;
	pk_obj **memo_vals;
	size_t memo_n, memo_cap;

	muse_strmap gmap; /* global name -> index in globals_table */

	muse_pickle_result *res;
	size_t cap_storages, cap_tensors;
	muse_strmap keys;  /* storage key -> index */
	muse_strmap names; /* tensor name -> index */
	uint64_t visits;   /* container items walked: shared containers could make the walk exponential */
} pk_vm;

/* ---- errors ---- */

static muse_status fail_at(pk_vm *vm, size_t pos, muse_status code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static muse_status fail_at(pk_vm *vm, size_t pos, muse_status code, const char *fmt, ...)
{
	char what[MUSE_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	const muse_pickle_ctx *c = vm->ctx;
	return muse_err_at(vm->err, code, c && c->file ? c->file : "<pickle>", (c ? c->base : 0) + pos,
			   "%s byte %zu: %s", c && c->what ? c->what : "pickle", pos, what);
}

#define FAIL(vm, ...) fail_at((vm), (vm)->op_pos, MUSE_ERR_FORMAT, __VA_ARGS__)

static muse_status nomem(pk_vm *vm)
{
	return fail_at(vm, vm->op_pos, MUSE_ERR_NOMEM, "out of memory");
}

/* ---- memory: everything is accounted against MUSE_PICKLE_MAX_MEMORY ---- */

static muse_status charge(pk_vm *vm, uint64_t bytes)
{
	if (!muse_add_u64(vm->mem, bytes, &vm->mem) || vm->mem > MUSE_PICKLE_MAX_MEMORY)
		return fail_at(vm, vm->op_pos, MUSE_ERR_LIMIT, "pickle needs more than %llu MiB of objects",
			       (unsigned long long)(MUSE_PICKLE_MAX_MEMORY >> 20));
	return MUSE_OK;
}

static muse_status new_obj(pk_vm *vm, pk_type type, pk_obj **out)
{
	if (!vm->chunks || vm->chunks->used == CHUNK) {
		muse_status s = charge(vm, sizeof(pk_chunk));
		if (s)
			return s;
		pk_chunk *c = malloc(sizeof *c);
		if (!c)
			return nomem(vm);
		c->next = vm->chunks;
		c->used = 0;
		vm->chunks = c;
	}
	pk_obj *o = &vm->chunks->objs[vm->chunks->used++];
	memset(o, 0, sizeof *o);
	o->type = (uint8_t)type;
	o->pos = vm->op_pos;
	*out = o;
	return MUSE_OK;
}

static void free_objs(pk_vm *vm)
{
	pk_chunk *c = vm->chunks;
	while (c) {
		for (size_t i = 0; i < c->used; i++) {
			pk_obj *o = &c->objs[i];
			if (o->type == PK_TUPLE || o->type == PK_LIST || o->type == PK_DICT || o->type == PK_SET)
				free(o->u.items);
			else if (o->type == PK_TENSOR)
				free(o->u.t);
		}
		pk_chunk *next = c->next;
		free(c);
		c = next;
	}
	vm->chunks = NULL;
}

/* Makes room for `more` item slots in a container. */
static muse_status reserve(pk_vm *vm, pk_obj *o, size_t more)
{
	size_t need;
	if (!muse_add_size(o->n * (o->type == PK_DICT ? 2u : 1u), more, &need) || need > UINT32_MAX)
		return fail_at(vm, vm->op_pos, MUSE_ERR_LIMIT, "container with more than 2^32 items");
	if (need <= o->cap)
		return MUSE_OK;
	size_t cap = o->cap ? o->cap : 4;
	while (cap < need)
		cap = cap > UINT32_MAX / 2 ? UINT32_MAX : cap * 2;
	muse_status s = charge(vm, (uint64_t)(cap - o->cap) * sizeof(pk_obj *));
	if (s)
		return s;
	pk_obj **items = realloc(o->u.items, cap * sizeof *items);
	if (!items)
		return nomem(vm);
	o->u.items = items;
	o->cap = (uint32_t)cap;
	return MUSE_OK;
}

/* ---- stack ---- */

static size_t avail(const pk_vm *vm)
{
	return vm->sp - (vm->n_marks ? vm->marks[vm->n_marks - 1] : 0);
}

static muse_status push(pk_vm *vm, pk_obj *o)
{
	if (vm->sp == vm->stack_cap) {
		if (vm->stack_cap >= MUSE_PICKLE_MAX_STACK)
			return fail_at(vm, vm->op_pos, MUSE_ERR_LIMIT, "stack deeper than %u entries",
				       MUSE_PICKLE_MAX_STACK);
		size_t cap = vm->stack_cap ? vm->stack_cap * 2 : 64;
		muse_status s = charge(vm, (cap - vm->stack_cap) * sizeof(pk_obj *));
		if (s)
			return s;
		pk_obj **st = realloc(vm->stack, cap * sizeof *st);
		if (!st)
			return nomem(vm);
		vm->stack = st;
		vm->stack_cap = cap;
	}
	vm->stack[vm->sp++] = o;
	return MUSE_OK;
}

static const char *op_name(uint8_t op);

static muse_status underflow(pk_vm *vm, size_t need)
{
	uint8_t op = vm->p[vm->op_pos];
	return FAIL(vm, "%s needs %zu stack item%s above the last MARK, found %zu", op_name(op), need,
		    need == 1 ? "" : "s", avail(vm));
}

/* Pops the items above the last MARK: they stay in vm->stack[*first .. *first + *count). */
static muse_status pop_mark(pk_vm *vm, size_t *first, size_t *count)
{
	if (!vm->n_marks)
		return FAIL(vm, "%s without a MARK", op_name(vm->p[vm->op_pos]));
	size_t m = vm->marks[--vm->n_marks];
	*first = m;
	*count = vm->sp - m;
	vm->sp = m;
	return MUSE_OK;
}

/* ---- memo ---- */

static muse_status memo_put(pk_vm *vm, uint64_t key, pk_obj *o)
{
	if ((vm->memo_n + 1) * 2 > vm->memo_cap) {
		size_t cap = vm->memo_cap ? vm->memo_cap * 2 : 256;
		muse_status s = charge(vm, cap * (sizeof(uint64_t) + sizeof(pk_obj *)));
		if (s)
			return s;
		uint64_t *k = calloc(cap, sizeof *k);
		pk_obj **v = malloc(cap * sizeof *v);
		if (!k || !v) {
			free(k);
			free(v);
			return nomem(vm);
		}
		for (size_t i = 0; i < vm->memo_cap; i++) {
			if (!vm->memo_keys[i])
				continue;
			size_t h = (size_t)((vm->memo_keys[i] * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
			while (k[h])
				h = (h + 1) & (cap - 1);
			k[h] = vm->memo_keys[i];
			v[h] = vm->memo_vals[i];
		}
		free(vm->memo_keys);
		free(vm->memo_vals);
		vm->memo_keys = k;
		vm->memo_vals = v;
		vm->memo_cap = cap;
	}
	uint64_t k = key + 1;
	size_t h = (size_t)((k * 0x9E3779B97F4A7C15ull) >> 20) & (vm->memo_cap - 1);
	while (vm->memo_keys[h] && vm->memo_keys[h] != k)
		h = (h + 1) & (vm->memo_cap - 1);
	if (!vm->memo_keys[h]) {
		vm->memo_keys[h] = k;
		vm->memo_n++;
	}
	vm->memo_vals[h] = o;
	return MUSE_OK;
}

static pk_obj *memo_get(const pk_vm *vm, uint64_t key)
{
	if (!vm->memo_cap)
		return NULL;
	uint64_t k = key + 1;
	size_t h = (size_t)((k * 0x9E3779B97F4A7C15ull) >> 20) & (vm->memo_cap - 1);
	while (vm->memo_keys[h]) {
		if (vm->memo_keys[h] == k)
			return vm->memo_vals[h];
		h = (h + 1) & (vm->memo_cap - 1);
	}
	return NULL;
}

/* ---- reading operands ---- */

static muse_status need(pk_vm *vm, size_t k)
{
	if (vm->n - vm->pos < k)
		return FAIL(vm, "truncated: %s needs %zu more bytes, %zu left", op_name(vm->p[vm->op_pos]), k,
			    vm->n - vm->pos);
	return MUSE_OK;
}

static uint64_t le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static muse_status push_int(pk_vm *vm, int64_t v)
{
	if (v >= 0 && v < 256)
		return push(vm, &vm->small[v]);
	pk_obj *o;
	muse_status s = new_obj(vm, PK_INT, &o);
	if (s)
		return s;
	o->u.i = v;
	return push(vm, o);
}

/* A str operand of len bytes at vm->pos: validated, borrowed from the input. */
static muse_status push_str(pk_vm *vm, size_t len)
{
	muse_status s = need(vm, len);
	if (s)
		return s;
	const char *p = (const char *)vm->p + vm->pos;
	if (!muse_utf8_valid(p, len))
		return FAIL(vm, "string of %zu bytes is not valid UTF-8", len);
	pk_obj *o;
	if ((s = new_obj(vm, PK_STR, &o)))
		return s;
	o->u.s.p = p;
	o->u.s.len = len;
	vm->pos += len;
	return push(vm, o);
}

static muse_status new_container(pk_vm *vm, pk_type t, pk_obj **out)
{
	muse_status s = new_obj(vm, t, out);
	return s ? s : push(vm, *out);
}

/* Builds a tuple from k stack items ending at the top (k <= avail was checked). */
static muse_status make_tuple(pk_vm *vm, size_t first, size_t k)
{
	pk_obj *o;
	muse_status s = new_obj(vm, PK_TUPLE, &o);
	if (s || (k && (s = reserve(vm, o, k))))
		return s;
	if (k)
		memcpy(o->u.items, vm->stack + first, k * sizeof *o->u.items);
	o->n = (uint32_t)k;
	vm->sp = first;
	return push(vm, o);
}

/* ---- GLOBAL resolution ---- */

static bool ident_ok(const char *s, size_t n)
{
	if (!n)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
		      c == '.'))
			return false;
	}
	return true;
}

#define MAX_GLOBAL_PART 256

/* Looks module.name up in the allowlist; anything else stops the run here, before it is used. */
static muse_status resolve_global(pk_vm *vm, const char *mod, size_t mlen, const char *name, size_t nlen,
				  pk_obj **out)
{
	if (!ident_ok(mod, mlen) || !ident_ok(name, nlen))
		return FAIL(vm, "malformed global name (module %zu bytes, name %zu bytes; only [A-Za-z0-9_.] allowed)",
			    mlen, nlen);
	char full[2 * MAX_GLOBAL_PART + 2];
	memcpy(full, mod, mlen);
	full[mlen] = '.';
	memcpy(full + mlen + 1, name, nlen);
	full[mlen + 1 + nlen] = 0;
	size_t idx;
	if (!muse_strmap_get(&vm->gmap, full, mlen + 1 + nlen, &idx))
		return fail_at(vm, vm->op_pos, MUSE_ERR_FORMAT, "global '%s' is not allowed", full);
	const pk_global *g = &globals_table[idx];
	if (g->kind == G_REFUSED)
		return fail_at(vm, vm->op_pos, MUSE_ERR_UNSUPPORTED, "global '%s': %s", full, g->why);
	pk_obj *o;
	muse_status s = new_obj(vm, PK_GLOBAL, &o);
	if (s)
		return s;
	o->u.g = g;
	*out = o;
	return MUSE_OK;
}

static muse_status op_global(pk_vm *vm)
{
	const char *part[2];
	size_t len[2];
	for (int k = 0; k < 2; k++) {
		const uint8_t *start = vm->p + vm->pos;
		size_t left = vm->n - vm->pos, limit = left < MAX_GLOBAL_PART + 1 ? left : MAX_GLOBAL_PART + 1;
		const uint8_t *nl = memchr(start, '\n', limit);
		if (!nl) {
			if (left > MAX_GLOBAL_PART)
				return FAIL(vm, "GLOBAL %s longer than %d bytes", k ? "name" : "module", MAX_GLOBAL_PART);
			return FAIL(vm, "truncated: GLOBAL %s has no terminating newline", k ? "name" : "module");
		}
		part[k] = (const char *)start;
		len[k] = (size_t)(nl - start);
		vm->pos += len[k] + 1;
	}
	pk_obj *o;
	muse_status s = resolve_global(vm, part[0], len[0], part[1], len[1], &o);
	return s ? s : push(vm, o);
}

static muse_status op_stack_global(pk_vm *vm)
{
	if (avail(vm) < 2)
		return underflow(vm, 2);
	pk_obj *name = vm->stack[vm->sp - 1], *mod = vm->stack[vm->sp - 2];
	if (mod->type != PK_STR || name->type != PK_STR)
		return FAIL(vm, "STACK_GLOBAL needs two strings, got %s and %s", type_names[mod->type],
			    type_names[name->type]);
	if (mod->u.s.len > MAX_GLOBAL_PART || name->u.s.len > MAX_GLOBAL_PART)
		return FAIL(vm, "STACK_GLOBAL module or name longer than %d bytes", MAX_GLOBAL_PART);
	vm->sp -= 2;
	pk_obj *o;
	muse_status s = resolve_global(vm, mod->u.s.p, mod->u.s.len, name->u.s.p, name->u.s.len, &o);
	return s ? s : push(vm, o);
}

/* ---- persistent ids: ('storage', <storage class>, key, location, numel) ---- */

static bool str_eq(const pk_obj *o, const char *s)
{
	return o->type == PK_STR && o->u.s.len == strlen(s) && !memcmp(o->u.s.p, s, o->u.s.len);
}

static muse_status op_binpersid(pk_vm *vm)
{
	if (avail(vm) < 1)
		return underflow(vm, 1);
	pk_obj *pid = vm->stack[--vm->sp];
	if (pid->type != PK_TUPLE || pid->n != 5 || !str_eq(pid->u.items[0], "storage"))
		return FAIL(vm, "persistent id is not ('storage', type, key, location, numel) (got a %s of %u items)",
			    type_names[pid->type], pid->type == PK_TUPLE ? pid->n : 0);
	pk_obj **it = pid->u.items;
	if (it[1]->type != PK_GLOBAL || (it[1]->u.g->kind != G_STORAGE && it[1]->u.g->kind != G_UNTYPED))
		return FAIL(vm, "persistent id storage type is a %s, not a storage class",
			    it[1]->type == PK_GLOBAL ? it[1]->u.g->name : type_names[it[1]->type]);
	if (it[2]->type != PK_STR || it[3]->type != PK_STR || it[4]->type != PK_INT)
		return FAIL(vm, "persistent id fields are (%s, %s, %s), expected (str, str, int)",
			    type_names[it[2]->type], type_names[it[3]->type], type_names[it[4]->type]);
	const char *key = it[2]->u.s.p;
	size_t klen = it[2]->u.s.len;
	bool key_ok = klen >= 1 && klen <= 64;
	for (size_t i = 0; key_ok && i < klen; i++)
		key_ok = (key[i] >= '0' && key[i] <= '9') || (key[i] >= 'a' && key[i] <= 'z') ||
			 (key[i] >= 'A' && key[i] <= 'Z') || key[i] == '_';
	if (!key_ok)
		return FAIL(vm, "storage key '%.*s' is not 1-64 characters of [A-Za-z0-9_]", (int)(klen > 64 ? 64 : klen),
			    key);
	if (it[3]->u.s.len > 64)
		return FAIL(vm, "storage location longer than 64 bytes");
	if (it[4]->u.i < 0)
		return FAIL(vm, "storage '%.*s' has negative size %" PRId64, (int)klen, key, it[4]->u.i);

	const pk_global *g = it[1]->u.g;
	uint64_t numel = (uint64_t)it[4]->u.i;
	muse_pickle_result *r = vm->res;
	size_t idx;
	if (muse_strmap_get(&vm->keys, key, klen, &idx)) {
		/* The same key named twice must describe the same bytes. */
		const muse_pickle_storage *st = &r->storages[idx];
		if (strcmp(st->type_name, g->name) || st->numel != numel)
			return FAIL(vm, "storage '%s' declared again as %s of %" PRIu64 " (was %s of %" PRIu64 ")",
				    st->key, g->name, numel, st->type_name, st->numel);
	} else {
		if (r->n_storages == vm->cap_storages) {
			size_t cap = vm->cap_storages ? vm->cap_storages * 2 : 16;
			muse_status s = charge(vm, (cap - vm->cap_storages) * sizeof *r->storages);
			if (s)
				return s;
			muse_pickle_storage *ns = realloc(r->storages, cap * sizeof *ns);
			if (!ns)
				return nomem(vm);
			r->storages = ns;
			vm->cap_storages = cap;
		}
		muse_pickle_storage *st = &r->storages[r->n_storages];
		memset(st, 0, sizeof *st);
		st->key = strndup(key, klen);
		if (!st->key)
			return nomem(vm);
		r->n_storages++;
		st->type_name = g->name;
		st->dtype = g->dtype;
		st->untyped = g->kind == G_UNTYPED;
		st->numel = numel;
		st->pos = vm->op_pos;
		idx = r->n_storages - 1;
		if (muse_strmap_put(&vm->keys, st->key, klen, idx, NULL) < 0)
			return nomem(vm);
	}
	pk_obj *o;
	muse_status s = new_obj(vm, PK_STORAGE, &o);
	if (s)
		return s;
	o->u.storage = idx;
	return push(vm, o);
}

/* ---- calling allowlisted functions: every one only records a descriptor ---- */

static muse_status int_tuple(pk_vm *vm, const pk_obj *t, const char *what, uint64_t *out, int *n)
{
	if (t->type != PK_TUPLE)
		return FAIL(vm, "tensor %s is a %s, not a tuple", what, type_names[t->type]);
	if (t->n > MUSE_MAX_DIMS)
		return fail_at(vm, vm->op_pos, MUSE_ERR_LIMIT, "tensor %s has %u dimensions (at most %d)", what, t->n,
			       MUSE_MAX_DIMS);
	for (uint32_t i = 0; i < t->n; i++) {
		const pk_obj *v = t->u.items[i];
		if (v->type != PK_INT)
			return FAIL(vm, "tensor %s[%u] is a %s, not an int", what, i, type_names[v->type]);
		if (v->u.i < 0)
			return FAIL(vm, "tensor %s[%u] is negative (%" PRId64 ")", what, i, v->u.i);
		out[i] = (uint64_t)v->u.i;
	}
	*n = (int)t->n;
	return MUSE_OK;
}

static bool is_dict(const pk_obj *o)
{
	return o->type == PK_DICT;
}

/* torch._utils._rebuild_tensor{,_v2,_v3}(storage, offset, size, stride, ...) */
static muse_status rebuild_tensor(pk_vm *vm, const pk_global *g, const pk_obj *args, pk_obj **out)
{
	uint32_t n = args->n;
	bool ok = g->kind == G_REBUILD ? n == 4 : g->kind == G_REBUILD_V2 ? (n == 6 || n == 7) : (n == 7 || n == 8);
	if (!ok)
		return FAIL(vm, "%s called with %u arguments", g->name, n);
	pk_obj **a = args->u.items;
	if (a[0]->type != PK_STORAGE)
		return FAIL(vm, "%s: first argument is a %s, not a storage", g->name, type_names[a[0]->type]);
	if (a[1]->type != PK_INT || a[1]->u.i < 0)
		return FAIL(vm, "%s: storage offset is not a non-negative int", g->name);
	if (n >= 6) {
		if (a[4]->type != PK_BOOL)
			return FAIL(vm, "%s: requires_grad is a %s, not a bool", g->name, type_names[a[4]->type]);
		/* Backward hooks are functions; a state dict can only carry the empty dict torch writes. */
		if (!is_dict(a[5]) || a[5]->n)
			return FAIL(vm, "%s: backward_hooks is not an empty dict", g->name);
	}
	const muse_pickle_storage *st = &vm->res->storages[a[0]->u.storage];
	muse_dtype dt = st->dtype;
	const char *dname = st->type_name;
	if (g->kind == G_REBUILD_V3) {
		if (a[6]->type != PK_GLOBAL || a[6]->u.g->kind != G_DTYPE)
			return FAIL(vm, "%s: dtype argument is a %s, not a torch dtype", g->name,
				    a[6]->type == PK_GLOBAL ? a[6]->u.g->name : type_names[a[6]->type]);
		/* torch reinterprets typed storages here; no writer does that, so a mismatch is refused. */
		if (!st->untyped && a[6]->u.g->dtype != st->dtype)
			return FAIL(vm, "%s: dtype %s does not match storage type %s", g->name, a[6]->u.g->name,
				    st->type_name);
		dt = a[6]->u.g->dtype;
		dname = a[6]->u.g->name;
	}
	int last = g->kind == G_REBUILD_V2 ? 6 : 7;
	if ((int)n == last + 1 && a[last]->type != PK_NONE && !is_dict(a[last]))
		return FAIL(vm, "%s: metadata is a %s, not a dict", g->name, type_names[a[last]->type]);

	pk_tensor *t;
	muse_status s = charge(vm, sizeof *t);
	if (s)
		return s;
	t = calloc(1, sizeof *t);
	if (!t)
		return nomem(vm);
	pk_obj *o;
	if ((s = new_obj(vm, PK_TENSOR, &o))) {
		free(t);
		return s;
	}
	o->u.t = t;
	t->storage = a[0];
	t->dtype = dt;
	t->dtype_name = dname;
	t->offset = (uint64_t)a[1]->u.i;
	int nd_size, nd_stride;
	if ((s = int_tuple(vm, a[2], "size", t->size, &nd_size)) || (s = int_tuple(vm, a[3], "stride", t->stride, &nd_stride)))
		return s;
	if (nd_size != nd_stride)
		return FAIL(vm, "tensor size has %d dimensions but stride has %d", nd_size, nd_stride);
	t->ndim = nd_size;
	*out = o;
	return MUSE_OK;
}

static muse_status call(pk_vm *vm, const pk_global *g, const pk_obj *args, bool nested, pk_obj **out)
{
	switch (g->kind) {
	case G_ODICT:
		if (args->n)
			return FAIL(vm, "OrderedDict called with %u arguments (only OrderedDict() is supported)", args->n);
		{
			pk_obj *o;
			muse_status s = new_obj(vm, PK_DICT, &o);
			if (s)
				return s;
			o->ordered = true;
			*out = o;
		}
		return MUSE_OK;
	case G_REBUILD:
	case G_REBUILD_V2:
	case G_REBUILD_V3:
		return rebuild_tensor(vm, g, args, out);
	case G_PARAM:
	case G_PARAM_STATE:
		if (args->n != (g->kind == G_PARAM ? 3u : 4u))
			return FAIL(vm, "%s called with %u arguments", g->name, args->n);
		if (args->u.items[0]->type != PK_TENSOR)
			return FAIL(vm, "%s: data is a %s, not a tensor", g->name, type_names[args->u.items[0]->type]);
		if (args->u.items[1]->type != PK_BOOL)
			return FAIL(vm, "%s: requires_grad is not a bool", g->name);
		if (!is_dict(args->u.items[2]) || args->u.items[2]->n)
			return FAIL(vm, "%s: backward_hooks is not an empty dict", g->name);
		*out = args->u.items[0];
		return MUSE_OK;
	case G_FROM_TYPE_V2: {
		/* (func, new_type, args, state): func(*args) viewed as new_type; state carries Python attributes. */
		if (nested)
			return FAIL(vm, "%s nested in itself", g->name);
		if (args->n != 4)
			return FAIL(vm, "%s called with %u arguments", g->name, args->n);
		pk_obj **a = args->u.items;
		if (a[0]->type != PK_GLOBAL)
			return FAIL(vm, "%s: func is a %s, not a rebuild function", g->name, type_names[a[0]->type]);
		g_kind fk = a[0]->u.g->kind;
		if (fk != G_REBUILD && fk != G_REBUILD_V2 && fk != G_REBUILD_V3 && fk != G_PARAM && fk != G_PARAM_STATE)
			return FAIL(vm, "%s: func '%s' is not a tensor rebuild function", g->name, a[0]->u.g->name);
		if (a[1]->type != PK_GLOBAL || (a[1]->u.g->kind != G_TENSOR_CLS && a[1]->u.g->kind != G_PARAM_CLS))
			return FAIL(vm, "%s: type is %s; only torch.Tensor and torch.nn.parameter.Parameter are supported",
				    g->name, a[1]->type == PK_GLOBAL ? a[1]->u.g->name : type_names[a[1]->type]);
		if (a[2]->type != PK_TUPLE)
			return FAIL(vm, "%s: args is a %s, not a tuple", g->name, type_names[a[2]->type]);
		if (a[3]->type != PK_NONE && !is_dict(a[3]) && a[3]->type != PK_TUPLE)
			return FAIL(vm, "%s: state is a %s", g->name, type_names[a[3]->type]);
		muse_status s = call(vm, a[0]->u.g, a[2], true, out);
		if (s)
			return s;
		if ((*out)->type != PK_TENSOR)
			return FAIL(vm, "%s: func did not build a tensor", g->name);
		return MUSE_OK;
	}
	default:
		return FAIL(vm, "global '%s' cannot be called", g->name);
	}
}

static muse_status op_reduce(pk_vm *vm)
{
	if (avail(vm) < 2)
		return underflow(vm, 2);
	pk_obj *args = vm->stack[vm->sp - 1], *fn = vm->stack[vm->sp - 2];
	if (fn->type != PK_GLOBAL)
		return FAIL(vm, "REDUCE on a %s, not an allowlisted callable", type_names[fn->type]);
	if (args->type != PK_TUPLE)
		return FAIL(vm, "REDUCE arguments are a %s, not a tuple", type_names[args->type]);
	pk_obj *res;
	muse_status s = call(vm, fn->u.g, args, false, &res);
	if (s)
		return s;
	vm->sp -= 2;
	return push(vm, res);
}

static muse_status op_newobj(pk_vm *vm)
{
	if (avail(vm) < 2)
		return underflow(vm, 2);
	pk_obj *args = vm->stack[vm->sp - 1], *cls = vm->stack[vm->sp - 2];
	/* torch allows NEWOBJ for Parameter only (and user-allowlisted classes, which muse has none of). */
	if (cls->type != PK_GLOBAL || cls->u.g->kind != G_PARAM_CLS)
		return FAIL(vm, "NEWOBJ on %s is not allowed", cls->type == PK_GLOBAL ? cls->u.g->name : type_names[cls->type]);
	if (args->type != PK_TUPLE || args->n < 1 || args->n > 2 || args->u.items[0]->type != PK_TENSOR ||
	    (args->n == 2 && args->u.items[1]->type != PK_BOOL))
		return FAIL(vm, "NEWOBJ Parameter needs (tensor[, requires_grad])");
	pk_obj *t = args->u.items[0];
	vm->sp -= 2;
	return push(vm, t);
}

static muse_status op_build(pk_vm *vm)
{
	if (avail(vm) < 2)
		return underflow(vm, 2);
	pk_obj *state = vm->stack[vm->sp - 1], *inst = vm->stack[vm->sp - 2];
	/*
	 * torch applies BUILD to OrderedDict (attributes such as _metadata,
	 * never items), Tensor (set_(): repoints the storage) and Parameter.
	 * Only the first is data-only; the state is checked and dropped.
	 */
	if (inst->type != PK_DICT || !inst->ordered)
		return FAIL(vm, "BUILD on a %s is not allowed (only OrderedDict)", type_names[inst->type]);
	if (state->type != PK_DICT)
		return FAIL(vm, "BUILD state for OrderedDict is a %s, not a dict", type_names[state->type]);
	vm->sp--;
	return MUSE_OK;
}

static muse_status add_items(pk_vm *vm, pk_obj *target, pk_obj **items, size_t k)
{
	if (!k)
		return MUSE_OK;
	muse_status s = reserve(vm, target, k);
	if (s)
		return s;
	size_t base = target->type == PK_DICT ? 2u * target->n : target->n;
	memcpy(target->u.items + base, items, k * sizeof *items);
	target->n += (uint32_t)(target->type == PK_DICT ? k / 2 : k);
	return MUSE_OK;
}

static muse_status op_setitems(pk_vm *vm, bool many)
{
	size_t first, k;
	muse_status s;
	if (many) {
		if ((s = pop_mark(vm, &first, &k)))
			return s;
		if (k % 2)
			return FAIL(vm, "SETITEMS with an odd number (%zu) of items", k);
	} else {
		if (avail(vm) < 3)
			return underflow(vm, 3);
		k = 2;
		first = vm->sp - 2;
		vm->sp -= 2;
	}
	if (avail(vm) < 1)
		return underflow(vm, 1);
	pk_obj *d = vm->stack[vm->sp - 1];
	if (d->type != PK_DICT)
		return FAIL(vm, "%s on a %s (only dict and OrderedDict)", many ? "SETITEMS" : "SETITEM", type_names[d->type]);
	/* pop_mark left the items in place above sp; nothing has overwritten them yet. */
	return add_items(vm, d, vm->stack + first, k);
}

static muse_status op_append(pk_vm *vm, bool many)
{
	size_t first, k;
	muse_status s;
	if (many) {
		if ((s = pop_mark(vm, &first, &k)))
			return s;
	} else {
		if (avail(vm) < 2)
			return underflow(vm, 2);
		k = 1;
		first = --vm->sp;
	}
	if (avail(vm) < 1)
		return underflow(vm, 1);
	pk_obj *l = vm->stack[vm->sp - 1];
	if (l->type != PK_LIST)
		return FAIL(vm, "%s on a %s (only list)", many ? "APPENDS" : "APPEND", type_names[l->type]);
	return add_items(vm, l, vm->stack + first, k);
}

/* ---- opcode names for messages ---- */

static const char *op_name(uint8_t op)
{
	switch (op) {
	case '(': return "MARK";
	case '.': return "STOP";
	case '0': return "POP";
	case '1': return "POP_MARK";
	case '2': return "DUP";
	case 'F': return "FLOAT";
	case 'I': return "INT";
	case 'J': return "BININT";
	case 'K': return "BININT1";
	case 'L': return "LONG";
	case 'M': return "BININT2";
	case 'N': return "NONE";
	case 'P': return "PERSID";
	case 'Q': return "BINPERSID";
	case 'R': return "REDUCE";
	case 'S': return "STRING";
	case 'T': return "BINSTRING";
	case 'U': return "SHORT_BINSTRING";
	case 'V': return "UNICODE";
	case 'X': return "BINUNICODE";
	case 'a': return "APPEND";
	case 'b': return "BUILD";
	case 'c': return "GLOBAL";
	case 'd': return "DICT";
	case '}': return "EMPTY_DICT";
	case 'e': return "APPENDS";
	case 'g': return "GET";
	case 'h': return "BINGET";
	case 'i': return "INST";
	case 'j': return "LONG_BINGET";
	case 'l': return "LIST";
	case ']': return "EMPTY_LIST";
	case 'o': return "OBJ";
	case 'p': return "PUT";
	case 'q': return "BINPUT";
	case 'r': return "LONG_BINPUT";
	case 's': return "SETITEM";
	case 't': return "TUPLE";
	case ')': return "EMPTY_TUPLE";
	case 'u': return "SETITEMS";
	case 'G': return "BINFLOAT";
	case 'B': return "BINBYTES";
	case 'C': return "SHORT_BINBYTES";
	case 0x80: return "PROTO";
	case 0x81: return "NEWOBJ";
	case 0x82: return "EXT1";
	case 0x83: return "EXT2";
	case 0x84: return "EXT4";
	case 0x85: return "TUPLE1";
	case 0x86: return "TUPLE2";
	case 0x87: return "TUPLE3";
	case 0x88: return "NEWTRUE";
	case 0x89: return "NEWFALSE";
	case 0x8a: return "LONG1";
	case 0x8b: return "LONG4";
	case 0x8c: return "SHORT_BINUNICODE";
	case 0x8d: return "BINUNICODE8";
	case 0x8e: return "BINBYTES8";
	case 0x8f: return "EMPTY_SET";
	case 0x90: return "ADDITEMS";
	case 0x91: return "FROZENSET";
	case 0x92: return "NEWOBJ_EX";
	case 0x93: return "STACK_GLOBAL";
	case 0x94: return "MEMOIZE";
	case 0x95: return "FRAME";
	case 0x96: return "BYTEARRAY8";
	case 0x97: return "NEXT_BUFFER";
	case 0x98: return "READONLY_BUFFER";
	default: return "an unknown opcode";
	}
}

/* ---- the interpreter loop ---- */

static muse_status need_proto(pk_vm *vm, int p)
{
	if (vm->proto < p)
		return FAIL(vm, "%s is a protocol %d opcode in a protocol %d pickle", op_name(vm->p[vm->op_pos]), p,
			    vm->proto);
	return MUSE_OK;
}

static muse_status run(pk_vm *vm, pk_obj **result)
{
	muse_status s = MUSE_OK;
	if (vm->n < 2 || vm->p[0] != 0x80)
		return fail_at(vm, 0, MUSE_ERR_FORMAT, "pickle does not start with PROTO (protocol 2 or later)");
	for (;;) {
		if (vm->pos >= vm->n)
			return fail_at(vm, vm->pos, MUSE_ERR_FORMAT, "truncated: pickle ends without STOP");
		vm->op_pos = vm->pos;
		uint8_t op = vm->p[vm->pos++];
		pk_obj *o;
		switch (op) {
		case 0x80: /* PROTO */
			if (vm->op_pos != 0)
				return FAIL(vm, "PROTO after the first opcode");
			if ((s = need(vm, 1)))
				return s;
			vm->proto = vm->p[vm->pos++];
			if (vm->proto < 2 || vm->proto > 5)
				return fail_at(vm, vm->op_pos, MUSE_ERR_UNSUPPORTED,
					       "pickle protocol %d is not supported (2-5 are)", vm->proto);
			break;
		case 0x95: /* FRAME: a length hint; the bytes it covers must exist */
			if ((s = need_proto(vm, 4)) || (s = need(vm, 8)))
				return s;
			{
				uint64_t len = le(vm->p + vm->pos, 8);
				vm->pos += 8;
				if (len > vm->n - vm->pos)
					return FAIL(vm, "FRAME of %" PRIu64 " bytes but only %zu left", len, vm->n - vm->pos);
			}
			break;
		case '.': /* STOP */
			if (vm->n_marks)
				return FAIL(vm, "STOP with %zu unclosed MARKs", vm->n_marks);
			if (vm->sp != 1)
				return FAIL(vm, "STOP with %zu stack items (expected 1)", vm->sp);
			if (vm->pos != vm->n)
				return fail_at(vm, vm->pos, MUSE_ERR_FORMAT, "%zu bytes after STOP", vm->n - vm->pos);
			*result = vm->stack[0];
			return MUSE_OK;
		case '(': /* MARK */
			if (vm->n_marks == MUSE_PICKLE_MAX_MARKS)
				return fail_at(vm, vm->op_pos, MUSE_ERR_LIMIT, "more than %d nested MARKs",
					       MUSE_PICKLE_MAX_MARKS);
			vm->marks[vm->n_marks++] = vm->sp;
			break;
		case 'N':
			s = push(vm, &vm->none);
			break;
		case 0x88:
			s = push(vm, &vm->yes);
			break;
		case 0x89:
			s = push(vm, &vm->no);
			break;
		case 'K':
			if (!(s = need(vm, 1)))
				s = push_int(vm, vm->p[vm->pos++]);
			break;
		case 'M':
			if (!(s = need(vm, 2))) {
				s = push_int(vm, (int64_t)le(vm->p + vm->pos, 2));
				vm->pos += 2;
			}
			break;
		case 'J':
			if (!(s = need(vm, 4))) {
				s = push_int(vm, (int32_t)(uint32_t)le(vm->p + vm->pos, 4));
				vm->pos += 4;
			}
			break;
		case 0x8a: /* LONG1: n-byte two's complement little-endian */
			if ((s = need(vm, 1)))
				return s;
			{
				uint8_t k = vm->p[vm->pos++];
				if ((s = need(vm, k)))
					return s;
				if (k > 8)
					return fail_at(vm, vm->op_pos, MUSE_ERR_LIMIT, "LONG1 integer of %u bytes does not fit in 64 bits", k);
				uint64_t v = le(vm->p + vm->pos, k);
				if (k && k < 8 && (vm->p[vm->pos + k - 1] & 0x80))
					v |= ~0ull << (8 * k);
				vm->pos += k;
				s = push_int(vm, (int64_t)v);
			}
			break;
		case 'G': /* BINFLOAT: big-endian double */
			if ((s = need(vm, 8)))
				return s;
			{
				uint64_t bits = 0;
				for (int i = 0; i < 8; i++)
					bits = bits << 8 | vm->p[vm->pos + i];
				vm->pos += 8;
				if ((s = new_obj(vm, PK_FLOAT, &o)))
					return s;
				memcpy(&o->u.f, &bits, sizeof bits);
				s = push(vm, o);
			}
			break;
		case 'X': /* BINUNICODE */
			if (!(s = need(vm, 4))) {
				size_t len = (size_t)le(vm->p + vm->pos, 4);
				vm->pos += 4;
				s = push_str(vm, len);
			}
			break;
		case 0x8c: /* SHORT_BINUNICODE */
			if (!(s = need_proto(vm, 4)) && !(s = need(vm, 1)))
				s = push_str(vm, vm->p[vm->pos++]);
			break;
		case 0x8d: /* BINUNICODE8: the length is checked against the bytes left before anything else */
			if (!(s = need_proto(vm, 4)) && !(s = need(vm, 8))) {
				uint64_t len = le(vm->p + vm->pos, 8);
				vm->pos += 8;
				if (len > vm->n - vm->pos)
					return FAIL(vm, "BINUNICODE8 of %" PRIu64 " bytes but only %zu left", len, vm->n - vm->pos);
				s = push_str(vm, (size_t)len);
			}
			break;
		case 'U': /* SHORT_BINSTRING: torch.load decodes it as UTF-8 */
			if (!(s = need(vm, 1)))
				s = push_str(vm, vm->p[vm->pos++]);
			break;
		case ')':
			s = make_tuple(vm, vm->sp, 0);
			break;
		case 0x85:
		case 0x86:
		case 0x87: {
			size_t k = (size_t)(op - 0x84);
			if (avail(vm) < k)
				return underflow(vm, k);
			s = make_tuple(vm, vm->sp - k, k);
			break;
		}
		case 't': {
			size_t first, k;
			if (!(s = pop_mark(vm, &first, &k)))
				s = make_tuple(vm, first, k);
			break;
		}
		case ']':
			s = new_container(vm, PK_LIST, &o);
			break;
		case '}':
			s = new_container(vm, PK_DICT, &o);
			break;
		case 0x8f:
			s = new_container(vm, PK_SET, &o);
			break;
		case 'a':
			s = op_append(vm, false);
			break;
		case 'e':
			s = op_append(vm, true);
			break;
		case 's':
			s = op_setitems(vm, false);
			break;
		case 'u':
			s = op_setitems(vm, true);
			break;
		case 'c':
			s = op_global(vm);
			break;
		case 0x93:
			if (!(s = need_proto(vm, 4)))
				s = op_stack_global(vm);
			break;
		case 'R':
			s = op_reduce(vm);
			break;
		case 0x81:
			s = op_newobj(vm);
			break;
		case 'b':
			s = op_build(vm);
			break;
		case 'Q':
			s = op_binpersid(vm);
			break;
		case 'h':
		case 'j': {
			int w = op == 'h' ? 1 : 4;
			if ((s = need(vm, (size_t)w)))
				return s;
			uint64_t idx = le(vm->p + vm->pos, w);
			vm->pos += (size_t)w;
			pk_obj *m = memo_get(vm, idx);
			if (!m)
				return FAIL(vm, "%s of memo index %" PRIu64 ", which was never set", op_name(op), idx);
			s = push(vm, m);
			break;
		}
		case 'q':
		case 'r': {
			int w = op == 'q' ? 1 : 4;
			if ((s = need(vm, (size_t)w)))
				return s;
			uint64_t idx = le(vm->p + vm->pos, w);
			vm->pos += (size_t)w;
			if (avail(vm) < 1)
				return underflow(vm, 1);
			s = memo_put(vm, idx, vm->stack[vm->sp - 1]);
			break;
		}
		case 0x94: /* MEMOIZE: memo[len(memo)] = top */
			if ((s = need_proto(vm, 4)))
				return s;
			if (avail(vm) < 1)
				return underflow(vm, 1);
			s = memo_put(vm, vm->memo_n, vm->stack[vm->sp - 1]);
			break;
		default:
			return fail_at(vm, vm->op_pos, MUSE_ERR_FORMAT, "opcode 0x%02x (%s) is not allowed", op, op_name(op));
		}
		if (s)
			return s;
	}
}

/* ---- collecting tensors from the result ---- */

typedef struct name_buf {
	char *p;
	size_t len, cap;
} name_buf;

static muse_status emit(pk_vm *vm, const pk_obj *o, const name_buf *nb)
{
	const pk_tensor *t = o->u.t;
	muse_pickle_result *r = vm->res;
	if (nb->len == 0)
		return fail_at(vm, o->pos, MUSE_ERR_FORMAT, "tensor with an empty name");
	if (memchr(nb->p, 0, nb->len))
		return fail_at(vm, o->pos, MUSE_ERR_FORMAT, "tensor name contains a NUL byte");
	if (t->dtype == MUSE_DT_INVALID)
		return fail_at(vm, o->pos, MUSE_ERR_UNSUPPORTED, "tensor '%s': element type %s is not supported", nb->p,
			       t->dtype_name);
	if (r->n_tensors == MUSE_PICKLE_MAX_TENSORS)
		return fail_at(vm, o->pos, MUSE_ERR_LIMIT, "more than %u tensors", MUSE_PICKLE_MAX_TENSORS);
	if (r->n_tensors == vm->cap_tensors) {
		size_t cap = vm->cap_tensors ? vm->cap_tensors * 2 : 64;
		muse_pickle_tensor *nt = realloc(r->tensors, cap * sizeof *nt);
		if (!nt)
			return nomem(vm);
		r->tensors = nt;
		vm->cap_tensors = cap;
	}
	muse_pickle_tensor *d = &r->tensors[r->n_tensors];
	memset(d, 0, sizeof *d);
	d->name = strndup(nb->p, nb->len);
	if (!d->name)
		return nomem(vm);
	r->n_tensors++;
	size_t old;
	int put = muse_strmap_put(&vm->names, d->name, nb->len, r->n_tensors - 1, &old);
	if (put < 0)
		return nomem(vm);
	if (put == 0)
		return fail_at(vm, o->pos, MUSE_ERR_FORMAT, "duplicate tensor name '%s'", d->name);
	d->storage = t->storage->u.storage;
	d->dtype = t->dtype;
	d->ndim = t->ndim;
	memcpy(d->size, t->size, sizeof d->size);
	memcpy(d->stride, t->stride, sizeof d->stride);
	d->offset = t->offset;
	d->pos = o->pos;
	return MUSE_OK;
}

/* Appends ".key" (or "key" at the root) to nb; returns the old length for restoring. */
static muse_status name_push(pk_vm *vm, name_buf *nb, const char *s, size_t n, size_t *old)
{
	*old = nb->len;
	size_t need = nb->len + (nb->len ? 1 : 0) + n + 1;
	if (need > MUSE_MAX_NAME)
		return fail_at(vm, vm->op_pos, MUSE_ERR_LIMIT, "tensor name longer than %d bytes", MUSE_MAX_NAME);
	if (need > nb->cap) {
		char *p = realloc(nb->p, MUSE_MAX_NAME + 1);
		if (!p)
			return nomem(vm);
		nb->p = p;
		nb->cap = MUSE_MAX_NAME + 1;
	}
	if (nb->len)
		nb->p[nb->len++] = '.';
	memcpy(nb->p + nb->len, s, n);
	nb->len += n;
	nb->p[nb->len] = 0;
	return MUSE_OK;
}

static bool is_container(const pk_obj *o)
{
	return o->type == PK_DICT || o->type == PK_LIST || o->type == PK_TUPLE;
}

#define MAX_VISITS (1ull << 25)

/* Recursion is bounded by MUSE_PICKLE_MAX_NEST, not by the input; work by MAX_VISITS. */
static muse_status walk(pk_vm *vm, const pk_obj *o, name_buf *nb, int depth)
{
	if (o->type == PK_TENSOR)
		return emit(vm, o, nb);
	if (o->type == PK_STORAGE)
		return fail_at(vm, o->pos, MUSE_ERR_UNSUPPORTED, "'%s' is a bare storage, not a tensor", nb->p);
	if (!is_container(o))
		return MUSE_OK; /* numbers, strings, dtypes, None: not tensors */
	if (depth >= MUSE_PICKLE_MAX_NEST)
		return fail_at(vm, o->pos, MUSE_ERR_LIMIT, "'%s': containers nested deeper than %d levels", nb->p,
			       MUSE_PICKLE_MAX_NEST);
	bool dict = o->type == PK_DICT;
	if (!muse_add_u64(vm->visits, o->n, &vm->visits) || vm->visits > MAX_VISITS)
		return fail_at(vm, o->pos, MUSE_ERR_LIMIT, "more than %llu container items to walk (shared containers?)",
			       (unsigned long long)MAX_VISITS);
	for (uint32_t i = 0; i < o->n; i++) {
		const pk_obj *v = dict ? o->u.items[2 * i + 1] : o->u.items[i];
		if (!is_container(v) && v->type != PK_TENSOR && v->type != PK_STORAGE)
			continue;
		char num[24];
		const char *key;
		size_t klen;
		if (!dict) {
			klen = (size_t)snprintf(num, sizeof num, "%u", i);
			key = num;
		} else {
			const pk_obj *k = o->u.items[2 * i];
			if (k->type == PK_STR) {
				key = k->u.s.p;
				klen = k->u.s.len;
			} else if (k->type == PK_INT) {
				klen = (size_t)snprintf(num, sizeof num, "%" PRId64, k->u.i);
				key = num;
			} else {
				return fail_at(vm, k->pos, MUSE_ERR_UNSUPPORTED,
					       "'%s': dict key of type %s holds tensors (only str and int keys are supported)",
					       nb->p ? nb->p : "", type_names[k->type]);
			}
		}
		size_t old;
		muse_status s = name_push(vm, nb, key, klen, &old);
		if (!s)
			s = walk(vm, v, nb, depth + 1);
		if (s)
			return s;
		nb->len = old;
		nb->p[old] = 0;
	}
	return MUSE_OK;
}

static void result_clear(muse_pickle_result *r)
{
	for (size_t i = 0; i < r->n_tensors; i++)
		free(r->tensors[i].name);
	free(r->tensors);
	for (size_t i = 0; i < r->n_storages; i++)
		free(r->storages[i].key);
	free(r->storages);
	memset(r, 0, sizeof *r);
}

void muse_pickle_result_free(muse_pickle_result *r)
{
	if (r)
		result_clear(r);
}

muse_status muse_pickle_load_tensors(const uint8_t *p, size_t n, const muse_pickle_ctx *ctx,
				     muse_pickle_result *out, muse_err *err)
{
	memset(out, 0, sizeof *out);
	pk_vm *vm = calloc(1, sizeof *vm);
	if (!vm)
		return muse_err_set(err, MUSE_ERR_NOMEM, "%s: out of memory", ctx && ctx->file ? ctx->file : "pickle");
	vm->p = p;
	vm->n = n;
	vm->ctx = ctx;
	vm->err = err;
	vm->res = out;
	vm->none.type = PK_NONE;
	vm->yes.type = PK_BOOL;
	vm->yes.u.b = true;
	vm->no.type = PK_BOOL;
	for (int i = 0; i < 256; i++) {
		vm->small[i].type = PK_INT;
		vm->small[i].u.i = i;
	}
	muse_strmap_init(&vm->gmap);
	muse_strmap_init(&vm->keys);
	muse_strmap_init(&vm->names);
	name_buf nb = { 0 };
	muse_status s = MUSE_OK;
	for (size_t i = 0; i < sizeof globals_table / sizeof *globals_table; i++)
		if (muse_strmap_put(&vm->gmap, globals_table[i].name, strlen(globals_table[i].name), i, NULL) < 0) {
			s = nomem(vm);
			goto done;
		}

	pk_obj *root = NULL;
	if ((s = run(vm, &root)))
		goto done;
	out->protocol = vm->proto;
	if (root->type != PK_DICT) {
		s = fail_at(vm, root->pos, MUSE_ERR_UNSUPPORTED, "top-level object is a %s, not a dict of tensors",
			    type_names[root->type]);
		goto done;
	}
	vm->op_pos = root->pos;
	s = walk(vm, root, &nb, 0);
done:
	free(nb.p);
	free_objs(vm);
	free(vm->stack);
	free(vm->memo_keys);
	free(vm->memo_vals);
	muse_strmap_free(&vm->gmap);
	muse_strmap_free(&vm->keys);
	muse_strmap_free(&vm->names);
	free(vm);
	if (s)
		result_clear(out);
	return s;
}
