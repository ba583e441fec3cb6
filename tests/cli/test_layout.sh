# test_layout.sh: the dependency direction of DESIGN.md: lib/ <- formats/ <- quant/ <- cmd/; kernels_hip generated.
. "$(dirname "$0")/lib.sh"

check_no_include() { # NAME DIR PATTERN
	local hits
	hits=$(grep -nE "#include \"[./]*($3)/" "$2"/*.[ch] 2>/dev/null)
	if [ -z "$hits" ]; then pass "$1"; else fail "$1" "$(echo "$hits" | head -3 | tr '\n' ' ')"; fi
}
check_no_include lib_is_leaf lib 'formats|quant|cmd|kernels_cuda|kernels_hip'
check_no_include formats_above_lib_only formats 'quant|cmd|kernels_cuda|kernels_hip'
check_no_include quant_no_cmd quant 'cmd'
# Every exported function in lib/formats/quant carries the muse_ prefix (STYLE 5).
bad=$(nm -g --defined-only build/asan/lib/*.o build/asan/formats/*.o build/asan/quant/*.o 2>/dev/null |
	awk '$2 ~ /^[TDB]$/ && $3 !~ /^(muse_|_)/ {print $3}' | sort -u | head -5)
[ -z "$bad" ] && pass exported_prefix || fail exported_prefix "unprefixed symbols: $(echo $bad)"
# File names are unique across the tree (STYLE 5).
dups=$(git ls-files '*.c' '*.h' '*.cu' | xargs -n1 basename | sort | uniq -d | grep -v '^unit.h$')
[ -z "$dups" ] && pass unique_file_names || fail unique_file_names "$dups"
# Block structs and block sizes are defined once, in lib/block_layout.h, which C, CUDA and HIP code share.
if blk=$("$(dirname "$0")/../../scripts/check_blocks.sh" 2>&1); then pass block_layout_once
else fail block_layout_once "defined outside lib/block_layout.h: $(echo "$blk" | head -3 | tr '\n' ' ')"; fi
