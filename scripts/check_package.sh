#!/usr/bin/env bash
# linnx as a package: install the built tree into a temporary prefix, then build a program from
# a project outside the tree twice, once with CMake's find_package(linnx) and once with
# pkg-config, and run both against the installed shared library (liblinnx.so.0).
#
# usage: check_package.sh BUILD_DIR [CC]
set -eu
build=${1:?build dir}
cc=${2:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
cmake --install "$build" --prefix "$prefix" > "$tmp/install.log"
libdir=$(dirname "$(find "$prefix" -name 'liblinnx.so.0' | head -1)")
[ -n "$libdir" ] || { echo "FAIL: no liblinnx.so.0 installed"; cat "$tmp/install.log"; exit 1; }
[ -f "$prefix/include/linnx/linnx.h" ] || { echo "FAIL: headers not installed"; exit 1; }

mkdir -p "$tmp/app"
cat > "$tmp/app/main.c" <<'C'
#include <linnx/linnx.h>
#include <stdio.h>
/* nnx.Linear(2, 3, rngs=nnx.Rngs(0)) applied to ones: a real call through the installed library. */
int main(void) {
    if (lx_version_number() != LINNX_VERSION_NUMBER) { /* headers and library from one install */
        fprintf(stderr, "headers %s, library %s\n", LINNX_VERSION, lx_version());
        return 1;
    }
    nnx_rngs *rngs = NULL;
    nnx_linear *l = NULL;
    if (nnx_rngs_from_seed(0, &rngs) != LX_OK || nnx_linear_new(2, 3, rngs, &l) != LX_OK) {
        fprintf(stderr, "%s\n", lx_last_error());
        return 1;
    }
    lx_array *x = lx_array_full_f32(2, (int64_t[]){1, 2}, 1.0f);
    lx_array *y = nnx_linear_forward(l, x);
    int ok = y && y->ndim == 2 && y->shape[1] == 3;
    printf("%s\n", ok ? "ok" : lx_last_error());
    lx_release(x);
    nnx_module_release((nnx_module *)l);
    nnx_rngs_release(rngs);
    return ok ? 0 : 1;
}
C
cat > "$tmp/app/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(linnx_consumer LANGUAGES C)
find_package(linnx 0.1 REQUIRED)
add_executable(app main.c)
target_link_libraries(app PRIVATE linnx::linnx)
add_executable(app_static main.c)
target_link_libraries(app_static PRIVATE linnx::linnx_static)
CM
if ! cmake -S "$tmp/app" -B "$tmp/app/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
        > "$tmp/cfg.log" 2>&1; then
    echo "FAIL: find_package(linnx)"; cat "$tmp/cfg.log"; exit 1
fi
cmake --build "$tmp/app/build" > "$tmp/build.log" 2>&1 || { echo "FAIL: building against linnx::linnx"; cat "$tmp/build.log"; exit 1; }
LD_LIBRARY_PATH="$libdir" "$tmp/app/build/app" || { echo "FAIL: the find_package program"; exit 1; }
"$tmp/app/build/app_static" || { echo "FAIL: the static find_package program"; exit 1; }
LD_LIBRARY_PATH="$libdir" ldd "$tmp/app/build/app" | grep -q "liblinnx.so.0 => $libdir/" \
    || { echo "FAIL: app does not load the installed liblinnx.so.0"; exit 1; }
echo "find_package(linnx): ok"

# A version the package does not provide is refused (0.x: only the same minor is compatible).
cat > "$tmp/app/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(linnx_consumer2 LANGUAGES C)
find_package(linnx 0.2 REQUIRED)
CM
if cmake -S "$tmp/app" -B "$tmp/app/build2" -DCMAKE_PREFIX_PATH="$prefix" > /dev/null 2>&1; then
    echo "FAIL: find_package(linnx 0.2) accepted version 0.1"; exit 1
fi
echo "find_package(linnx 0.2): refused, as it should be"

# pkg-config, from the installed (relocatable) linnx.pc.
export PKG_CONFIG_PATH="$libdir/pkgconfig"
flags=$(pkg-config --cflags --libs linnx)
"$cc" -std=c11 "$tmp/app/main.c" $flags -o "$tmp/app/app_pc" || { echo "FAIL: building with pkg-config ($flags)"; exit 1; }
LD_LIBRARY_PATH="$libdir" "$tmp/app/app_pc" || { echo "FAIL: the pkg-config program"; exit 1; }
echo "pkg-config linnx: ok ($flags)"
[ "$(pkg-config --modversion linnx)" = "$(sed -n 's/^#define LINNX_VERSION "\(.*\)"$/\1/p' "$prefix/include/linnx/version.h")" ] \
    || { echo "FAIL: pkg-config --modversion differs from linnx/version.h"; exit 1; }

# A static link through pkg-config --static: liblinnx.a and everything it needs (MPI included when
# the library was built with it), nothing left undefined.
sflags=$(pkg-config --static --libs linnx | sed 's/-llinnx//')
"$cc" -std=c11 "$tmp/app/main.c" $(pkg-config --cflags linnx) "$libdir/liblinnx.a" $sflags -o "$tmp/app/app_pc_static" \
    > "$tmp/static.log" 2>&1 || { echo "FAIL: static link with pkg-config --static"; grep -m5 "undefined" "$tmp/static.log"; exit 1; }
"$tmp/app/app_pc_static" || { echo "FAIL: the static pkg-config program"; exit 1; }
echo "pkg-config --static linnx: ok"

# The installed headers also compile as C++ (their extern "C" blocks promise it; linen_opts's
# `mutable` member is spelled mutable_ there).
if command -v c++ > /dev/null 2>&1; then
    printf '#include <linnx/linnx.h>\nint main() { linen_opts o = {}; return o.mutable_given; }\n' > "$tmp/app/cxx.cpp"
    c++ -std=c++17 -fsyntax-only -I "$prefix/include" $(pkg-config --cflags linnx) "$tmp/app/cxx.cpp" \
        || { echo "FAIL: linnx.h does not compile as C++"; exit 1; }
    echo "C++: linnx.h compiles"
fi
