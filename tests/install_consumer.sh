#!/bin/sh
# install_consumer.sh CC CMAKE BUILD_DIR: install the build into a temporary
# prefix and build tiny programs against the installed copy only, the two
# ways the README gives: a CMake project with find_package(ctrio CONFIG)
# (ctrio::ctrio, ctrio::ctrio_static, and ctrio::ctrio_tls where libctrio_tls
# was built), and pkg-config with the installed ctrio.pc / ctrio-tls.pc.
# Each program must link and run: it checks that the library it runs against
# reports the header's version, and runs a task. The shared ones must load
# libctrio from the prefix under its SONAME, and find_package must refuse a
# version the library's rule calls incompatible (README "Versions and ABI").
set -u
CC=$1 CMAKE=$2 BUILD=$3
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
P=$T/prefix

"$CMAKE" --install "$BUILD" --prefix "$P" >"$T/install.log" 2>&1 || { cat "$T/install.log"; fail "cmake --install"; }
config=$(find "$P" -name ctrio-config.cmake) && [ -n "$config" ] || fail "no ctrio-config.cmake installed"
pc=$(find "$P" -name ctrio.pc) && [ -n "$pc" ] || fail "no ctrio.pc installed"
libdir=$(dirname "$(dirname "$pc")")
soname=$(readelf -d "$libdir/libctrio.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ -e "$libdir/$soname" ] || fail "libctrio's SONAME $soname is not installed in $libdir"

mkdir -p "$T/src"
cat >"$T/src/main.c" <<'C'
#include <ctrio.h>
#include <stdio.h>
#include <string.h>
static int task(void *arg) { (void)arg; return ctrio_sleep(0); }
int main(void)
{
    if (ctrio_version_hex() != CTRIO_VERSION_HEX || strcmp(ctrio_version(), CTRIO_VERSION_STRING))
        return 3;
    if (ctrio_run(task, NULL) != 0)
        return 4;
    printf("ctrio %s\n", ctrio_version());
    return 0;
}
C
cat >"$T/src/tls.c" <<'C'
#include <ctrio_tls.h>
int main(void)
{
    ctrio_tls_context *ctx;
    if (ctrio_tls_client_context(&ctx) != 0)
        return 3;
    ctrio_tls_context_free(ctx);
    return ctrio_version_hex() == CTRIO_VERSION_HEX ? 0 : 4;
}
C
cat >"$T/src/CMakeLists.txt" <<'C'
cmake_minimum_required(VERSION 3.25)
project(consumer C)
find_package(ctrio ${WANT} CONFIG REQUIRED)
add_executable(dyn main.c)
target_link_libraries(dyn PRIVATE ctrio::ctrio)
add_executable(sta main.c)
target_link_libraries(sta PRIVATE ctrio::ctrio_static)
if(TARGET ctrio::ctrio_tls)
    add_executable(tls tls.c)
    target_link_libraries(tls PRIVATE ctrio::ctrio_tls)
    add_executable(tls_sta tls.c)
    target_link_libraries(tls_sta PRIVATE ctrio::ctrio_tls_static)
endif()
C
version=$(sed -n 's/^set(PACKAGE_VERSION "\(.*\)")/\1/p' "$(dirname "$config")/ctrio-config-version.cmake")
[ -n "$version" ] || fail "no version in ctrio-config-version.cmake"

# find_package with the installed version asked for; nothing but the prefix
# to look in (no source tree, no build tree).
"$CMAKE" -S "$T/src" -B "$T/cm" -DCMAKE_C_COMPILER="$CC" -DCMAKE_PREFIX_PATH="$P" \
    -DWANT="$version" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >"$T/cm.log" 2>&1 ||
    { cat "$T/cm.log"; fail "find_package(ctrio $version CONFIG)"; }
"$CMAKE" --build "$T/cm" >"$T/cmb.log" 2>&1 || { cat "$T/cmb.log"; fail "building against ctrio::ctrio"; }
"$T/cm/dyn" >/dev/null || fail "the program linked with ctrio::ctrio does not run"
"$T/cm/sta" >/dev/null || fail "the program linked with ctrio::ctrio_static does not run"
ldd "$T/cm/dyn" | grep -q "$soname => $libdir/" || fail "ctrio::ctrio does not load $soname from $libdir: $(ldd "$T/cm/dyn")"
ldd "$T/cm/sta" | grep -q libctrio && fail "ctrio::ctrio_static loads a shared libctrio"
if [ -f "$libdir/libctrio_tls.so" ]; then
    [ -x "$T/cm/tls" ] || fail "libctrio_tls installed, but no ctrio::ctrio_tls"
    "$T/cm/tls" || fail "the program linked with ctrio::ctrio_tls does not run"
    "$T/cm/tls_sta" || fail "the program linked with ctrio::ctrio_tls_static does not run"
fi

# An older version the rule calls incompatible (a newer one always is): the
# previous MINOR before 1.0 (any 0.y may break), the previous MAJOR after.
major=${version%%.*} rest=${version#*.}
minor=${rest%%.*}
if [ "$major" != 0 ]; then other=$((major - 1)).0
elif [ "$minor" != 0 ]; then other=0.$((minor - 1))
else other=0.1; fi
if "$CMAKE" -S "$T/src" -B "$T/cm2" -DCMAKE_C_COMPILER="$CC" -DCMAKE_PREFIX_PATH="$P" \
    -DWANT="$other" >"$T/cm2.log" 2>&1; then
    fail "find_package(ctrio $other) accepted version $version"
fi

if command -v pkg-config >/dev/null 2>&1; then
    export PKG_CONFIG_PATH="$libdir/pkgconfig"
    flags=$(pkg-config --cflags --libs ctrio) || fail "pkg-config finds no ctrio in $libdir/pkgconfig"
    # shellcheck disable=SC2086 # the flags are words
    "$CC" "$T/src/main.c" $flags -o "$T/pc" || fail "pkg-config's flags: $flags"
    LD_LIBRARY_PATH=$libdir "$T/pc" >/dev/null || fail "the program from pkg-config's flags does not run"
    LD_LIBRARY_PATH=$libdir ldd "$T/pc" | grep -q "$soname => $libdir/" || fail "pkg-config's program does not load $soname"
    if [ -f "$libdir/pkgconfig/ctrio-tls.pc" ]; then
        flags=$(pkg-config --cflags --libs ctrio-tls) || fail "pkg-config finds no ctrio-tls"
        # shellcheck disable=SC2086
        "$CC" "$T/src/tls.c" $flags -o "$T/pctls" || fail "pkg-config's ctrio-tls flags: $flags"
        LD_LIBRARY_PATH=$libdir "$T/pctls" || fail "the program from pkg-config's ctrio-tls flags does not run"
    fi
fi
echo "PASS: find_package(ctrio $version CONFIG) and pkg-config against $P (refused $other)"
