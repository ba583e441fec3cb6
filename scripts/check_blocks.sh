#!/usr/bin/env bash
# check_blocks.sh: fails when a block struct or a block-size constant is defined outside lib/block_layout.h.
# Usage: scripts/check_blocks.sh [ROOT]. Prints each offending line (file:line: text) and exits 1; silent, exit 0,
# when every definition is in the header. Scans the C, C++, CUDA and HIP sources git knows of, untracked ones
# included, so a new file is checked before it is added. Grep only: well under a second.
#
# What counts as a definition:
#  - a struct named like a block (a name with "block_" in it, or ending in a GGUF type the header defines:
#    q4_0, q2_k, iq2_xxs, ...), whether "typedef struct NAME {", "struct NAME {" or a "} NAME;" closing a typedef;
#  - "#define" of QK*, QR*, QI* (ggml's block-size families), K_SCALE_SIZE or IQ3S_N_SCALE, with or without
#    the MUSE_ prefix;
#  - "#define" of GROUP_MAX_EPS or KQ_EPS outside quant/quant_tables.h, the quantizers' one home for it.
set -u
cd "${1:-$(dirname "$0")/..}" || exit 2
HEADER=lib/block_layout.h

# The GGUF types the header lays out, as its struct names spell them (muse_block_<type>).
types=$(grep -oE '\}[[:space:]]*muse_block_[a-z0-9_]+;' "$HEADER" | sed -E 's/.*muse_block_([a-z0-9_]+);/\1/' | paste -sd'|')
[ -n "$types" ] || { echo "check_blocks: no muse_block_ structs found in $HEADER" >&2; exit 2; }
name="[A-Za-z0-9_]*(block_[A-Za-z0-9_]*|_($types))"
struct_re="^[[:space:]]*(typedef[[:space:]]+)?struct[[:space:]]+$name[[:space:]]*\\{|^[[:space:]]*\\}[[:space:]]*$name[[:space:]]*;"
const_re="^[[:space:]]*#[[:space:]]*define[[:space:]]+(MUSE_)?(Q[KRI][A-Z0-9_]*|K_SCALE_SIZE|IQ3S_N_SCALE)\\b"
eps_re="^[[:space:]]*#[[:space:]]*define[[:space:]]+(MUSE_)?(GROUP_MAX_EPS|KQ_EPS)\\b"

files=$(git ls-files -co --exclude-standard -- '*.c' '*.h' '*.cc' '*.cpp' '*.cu' '*.cuh' '*.hip' | grep -vxF "$HEADER")
[ -n "$files" ] || exit 0
hits=$(echo "$files" | xargs grep -nEi -e "$struct_re" -e "$const_re" /dev/null 2>/dev/null)
eps=$(echo "$files" | grep -vxF quant/quant_tables.h | xargs grep -nE -e "$eps_re" /dev/null 2>/dev/null)
out=$(printf '%s\n%s\n' "$hits" "$eps" | sed '/^$/d')
if [ -n "$out" ]; then
	echo "$out"
	exit 1
fi
exit 0
