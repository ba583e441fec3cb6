#!/usr/bin/env bash
# build_llama_cpp.sh: builds the real llama.cpp (CPU only) as a test oracle, from the pinned PyPI sdist
# of llama-cpp-python, which vendors llama.cpp with convert_hf_to_gguf.py and its own gguf-py. muse never
# links or runs any of it; only the tests do. Idempotent: a stamp makes a second run instant and silent.
#
# What other tests use (all paths relative to the repository root; tests/oracle/llamacpp.py wraps them):
#   .cache/llama.cpp/build/bin/llama-quantize     llama-quantize [--allow-requantize] [--imatrix F] IN.gguf OUT.gguf TYPE [NTHREADS]
#   .cache/llama.cpp/build/bin/llama-imatrix      llama-imatrix -m M.gguf -f TEXT -o OUT.gguf (or .dat)
#   .cache/llama.cpp/build/bin/llama-perplexity   llama-perplexity -m M.gguf -f TEXT [-c N] [--kl-divergence ...]
#   .cache/llama.cpp/build/bin/llama-gguf-split   llama-gguf-split --split|--merge ...
#   .cache/llama.cpp/build/bin/llama-tokenize     llama-tokenize -m M.gguf -p TEXT --ids --log-disable
#   .cache/llama.cpp/build/bin/ggml_quant         tests/oracle/ggml_quant.c: ggml_quantize_chunk / to_float
#                                                 on raw f32 rows, every GGUF type, with or without imatrix
#   .cache/llama.cpp/build/bin/llama_logits       tests/oracle/llama_logits.c: logits of every position
#   .cache/llama.cpp/src/convert_hf_to_gguf.py    run with .venv/bin/python; it imports the gguf-py next to
#                                                 it (.cache/llama.cpp/src/gguf-py), not the venv's gguf 0.19
#   .cache/llama.cpp/src/                         the llama.cpp tree (ggml/include, gguf-py, models/ ...)
# llama.cpp commit 0c1e57098bba (vendored by llama-cpp-python 0.3.36). CPU backend only, Release,
# GGML_NATIVE=OFF (ggml then enables its fixed x86-64 baseline: SSE4.2 AVX AVX2 BMI2 FMA F16C, never
# AVX-512, so the binaries do not depend on the build machine), OpenMP, static libraries, no BLAS, no
# network code. Quantized bytes come from ggml's scalar reference code and do not depend on SIMD.
# A first build takes about 930 s of CPU (20 min wall on this 2-core machine while others were busy;
# about 8 min on two idle cores) and 320 MB under .cache/llama.cpp (sdist 77, tree 138, build 100); the
# sdist download with pip takes about 20 s.
#
# Usage: scripts/build_llama_cpp.sh [--force]     (LLAMA_CPP_SDIST=FILE uses a local copy of the sdist;
# JOBS=N for the parallel build, default 2). Needs .venv's pip (scripts/deps.sh runs this last) or python3 -m pip.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.3.36
SDIST=llama_cpp_python-$VERSION.tar.gz
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
LLAMA_COMMIT=0c1e57098bba
TOP=.cache/llama.cpp
SRC=$TOP/src
BUILD=$TOP/build
BIN=$BUILD/bin
LOG=$TOP/build.log
TARGETS=(llama-quantize llama-imatrix llama-perplexity llama-gguf-split llama-tokenize)
ORACLES=(ggml_quant llama_logits)
JOBS=${JOBS:-2}

CMAKE_FLAGS=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF
	-DGGML_NATIVE=OFF -DGGML_CCACHE=OFF -DGGML_CPU=ON -DGGML_OPENMP=ON -DGGML_BLAS=OFF -DGGML_CUDA=OFF
	-DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_HIP=OFF -DGGML_SYCL=OFF -DGGML_OPENCL=OFF -DGGML_RPC=OFF
	-DGGML_BACKEND_DL=OFF
	-DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF
	-DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_LLGUIDANCE=OFF
	-DLLAMA_BUILD_NUMBER=0 -DLLAMA_BUILD_COMMIT=$LLAMA_COMMIT)

# The stamp covers everything that shapes the output: the sdist, this script (flags, targets) and the
# oracle sources. Any change rebuilds incrementally.
stamp_want=$( { echo "$SDIST_SHA256"; cat scripts/build_llama_cpp.sh tests/oracle/*.c; } | sha256sum | cut -d' ' -f1)
if [ "${1:-}" != --force ] && [ "$(cat "$TOP/.stamp" 2>/dev/null)" = "$stamp_want" ]; then
	ok=1
	for t in "${TARGETS[@]}" "${ORACLES[@]}"; do [ -x "$BIN/$t" ] || ok=0; done
	[ -f "$SRC/convert_hf_to_gguf.py" ] || ok=0
	[ $ok = 1 ] && exit 0
fi

die() {
	echo "build_llama_cpp: $*" >&2
	[ -f "$LOG" ] && { echo "build_llama_cpp: last lines of $LOG:" >&2; tail -n 30 "$LOG" >&2; }
	exit 1
}

# Build tools from Debian, installed the way scripts/deps.sh installs its packages.
missing=()
for p in cmake ninja-build g++; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "build_llama_cpp: installing Debian packages: ${missing[*]}"
	SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

start=$(date +%s)
mkdir -p "$TOP"
: >"$LOG"

# 1. The sdist, checked against the pinned hash (pip checks it too, through --require-hashes). pip
#    download still prepares the sdist's metadata (scikit-build-core in an isolated env, about 20 s);
#    no pip flag skips that for an sdist, and it builds nothing else.
have_sha() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SDIST_SHA256" ]; }
if ! have_sha "$TOP/$SDIST"; then
	if [ -n "${LLAMA_CPP_SDIST:-}" ]; then
		have_sha "$LLAMA_CPP_SDIST" || die "LLAMA_CPP_SDIST=$LLAMA_CPP_SDIST does not have sha256 $SDIST_SHA256"
		cp "$LLAMA_CPP_SDIST" "$TOP/$SDIST.part"
	else
		PIP=(.venv/bin/pip)
		[ -x .venv/bin/pip ] || PIP=(python3 -m pip)
		rm -rf "$TOP/dl"
		mkdir -p "$TOP/dl"
		echo "llama-cpp-python==$VERSION --hash=sha256:$SDIST_SHA256" >"$TOP/dl/req.txt"
		"${PIP[@]}" download -q --disable-pip-version-check --no-deps --no-binary :all: --require-hashes \
			-d "$TOP/dl" -r "$TOP/dl/req.txt" >>"$LOG" 2>&1 || die "pip download of llama-cpp-python==$VERSION failed"
		mv "$TOP/dl/$SDIST" "$TOP/$SDIST.part"
		rm -rf "$TOP/dl"
	fi
	have_sha "$TOP/$SDIST.part" || die "$SDIST: sha256 is not $SDIST_SHA256"
	mv "$TOP/$SDIST.part" "$TOP/$SDIST"
fi

# 2. The vendored tree, unpacked next to the build (docs and media left out: 40 MB nobody reads).
#    Its .git is a gitlink into a directory the sdist does not carry, so git commands inside it fail
#    instead of wandering up into muse's own repository.
if [ "$(cat "$SRC/.sdist-sha256" 2>/dev/null)" != "$SDIST_SHA256" ]; then
	rm -rf "$SRC" "$SRC.tmp" "$BUILD"
	mkdir -p "$SRC.tmp"
	tar -xzf "$TOP/$SDIST" -C "$SRC.tmp" --strip-components=3 \
		--exclude="llama_cpp_python-$VERSION/vendor/llama.cpp/docs" \
		--exclude="llama_cpp_python-$VERSION/vendor/llama.cpp/media" \
		"llama_cpp_python-$VERSION/vendor/llama.cpp" || die "unpacking $SDIST failed"
	[ -f "$SRC.tmp/convert_hf_to_gguf.py" ] || die "$SDIST has no vendor/llama.cpp/convert_hf_to_gguf.py"
	echo "$SDIST_SHA256" >"$SRC.tmp/.sdist-sha256"
	mv "$SRC.tmp" "$SRC"
fi

# 3. llama.cpp itself, only the targets the tests run. GIT_CEILING_DIRECTORIES keeps build-info from
#    picking up muse's commit if the gitlink above is ever missing.
export GIT_CEILING_DIRECTORIES=$PWD/$TOP
if [ -f "$BUILD/CMakeCache.txt" ] && ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$BUILD/CMakeCache.txt"; then
	rm -rf "$BUILD"
fi
cmake -S "$SRC" -B "$BUILD" "${CMAKE_FLAGS[@]}" >>"$LOG" 2>&1 || die "cmake configure failed"
cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}" >>"$LOG" 2>&1 || die "cmake build failed"

# 4. The oracle programs, linked statically against the same libraries as the tools above. C++ and
#    OpenMP come from libggml-cpu and libllama, hence g++ as the linker and -fopenmp.
LIBS=("$BUILD/src/libllama.a" "$BUILD/ggml/src/libggml.a" "$BUILD/ggml/src/libggml-cpu.a"
	"$BUILD/ggml/src/libggml-base.a")
for l in "${LIBS[@]}"; do [ -f "$l" ] || die "missing $l after the build"; done
INC=(-I"$SRC/ggml/include" -I"$SRC/include")
for o in "${ORACLES[@]}"; do
	{ gcc -std=c11 -O2 -Wall -Wextra -Werror "${INC[@]}" -c "tests/oracle/$o.c" -o "$BUILD/$o.o" &&
		g++ -o "$BIN/$o.tmp" "$BUILD/$o.o" "${LIBS[@]}" -fopenmp -lpthread -lm -ldl &&
		mv "$BIN/$o.tmp" "$BIN/$o"; } >>"$LOG" 2>&1 || die "building $o failed"
done

echo "$stamp_want" >"$TOP/.stamp"
echo "build_llama_cpp: llama.cpp $LLAMA_COMMIT (llama-cpp-python $VERSION) built in $(( $(date +%s) - start ))s -> $BIN"
