#!/usr/bin/env bash
# Install the Debian packages linnx needs, only those that are missing.
# Called by every Makefile target, so `make demo` and `make test` work on a fresh Debian machine.
# `install-deps.sh --bench` also installs PyTorch (python3-torch), the peer the benchmarks
# measure against; nothing else needs it. `install-deps.sh --fuzz` installs clang with its
# libFuzzer and sanitizer runtimes and OpenMP (clang, libclang-rt-dev, libomp-dev) for `make fuzz`.
# `install-deps.sh --fixtures` installs what `make fixtures`'s generators import (python3-numpy,
# python3-msgpack).
set -euo pipefail
# libmsgpack-dev: msgpack-c, the Flax msgpack writer; libjansson-dev: safetensors JSON headers;
# (--fuzz adds clang, libclang-rt-dev, libomp-dev: `make fuzz`.)
pkgs=(cmake make gcc pkg-config libopenblas-dev nettle-dev libmsgpack-dev libjansson-dev)
[ "${1:-}" = "--bench" ] && pkgs+=(python3-torch)
[ "${1:-}" = "--fuzz" ] && pkgs+=(clang libclang-rt-dev libomp-dev)
[ "${1:-}" = "--fixtures" ] && pkgs+=(python3 python3-numpy python3-msgpack)
missing=()
# libopenmpi-dev + openmpi-bin: data-parallel training over MPI (linnx/distributed.h; optional at
# build time, the multi-rank tests run with mpirun)
pkgs+=(libopenmpi-dev openmpi-bin)
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y --no-install-recommends "${missing[@]}" || {
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
}
