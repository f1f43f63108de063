#!/bin/sh
# build_tree_link.sh CC SOURCE_DIR BUILD_DIR: the two ways the README gives to
# build a program against the build tree, before any install: the plain
# compile line, and pkg-config with build/ctrio-uninstalled.pc. Each program
# must link and run (echo_server with no arguments prints its usage, status 2;
# its flow is in echo_server_flow.c, which tests/test_sweep.c shares). With
# libctrio_tls built, the same for its compile line and build/ctrio-tls-uninstalled.pc
# (https_get with no arguments prints its usage, status 2).
set -u
CC=$1 SRC=$2 BUILD=$3
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$CC" -I "$SRC/include" "$SRC/examples/echo_server.c" "$SRC/examples/echo_server_flow.c" "$BUILD/libctrio.a" -lm -o "$T/plain" ||
    fail "the README's compile line"
"$T/plain" >/dev/null 2>&1
[ $? -eq 2 ] || fail "the program from the compile line does not run"

if command -v pkg-config >/dev/null 2>&1; then
    flags=$(PKG_CONFIG_PATH=$BUILD pkg-config --cflags --libs ctrio) ||
        fail "pkg-config finds no ctrio in $BUILD"
    case "$flags" in *"$BUILD/libctrio.a"*) ;; *) fail "pkg-config did not use ctrio-uninstalled.pc: $flags" ;; esac
    # shellcheck disable=SC2086 # the flags are words
    "$CC" "$SRC/examples/echo_server.c" "$SRC/examples/echo_server_flow.c" $flags -o "$T/pc" || fail "pkg-config's flags"
    "$T/pc" >/dev/null 2>&1
    [ $? -eq 2 ] || fail "the program from pkg-config's flags does not run"
fi
if [ -f "$BUILD/libctrio_tls.a" ]; then
    "$CC" -I "$SRC/include" "$SRC/examples/https_get.c" "$BUILD/libctrio_tls.a" "$BUILD/libctrio.a" \
        -lssl -lcrypto -lm -o "$T/tls" || fail "the README's TLS compile line"
    "$T/tls" >/dev/null 2>&1
    [ $? -eq 2 ] || fail "the program from the TLS compile line does not run"
    if command -v pkg-config >/dev/null 2>&1; then
        flags=$(PKG_CONFIG_PATH=$BUILD pkg-config --cflags --libs ctrio-tls) ||
            fail "pkg-config finds no ctrio-tls in $BUILD"
        case "$flags" in *"$BUILD/libctrio_tls.a"*"$BUILD/libctrio.a"*) ;; *) fail "pkg-config did not use the uninstalled ctrio-tls and ctrio: $flags" ;; esac
        # shellcheck disable=SC2086 # the flags are words
        "$CC" "$SRC/examples/https_get.c" $flags -o "$T/tlspc" || fail "pkg-config's ctrio-tls flags"
        "$T/tlspc" >/dev/null 2>&1
        [ $? -eq 2 ] || fail "the program from pkg-config's ctrio-tls flags does not run"
    fi
    echo "PASS: TLS too"
fi
echo "PASS: both ways build against $BUILD"
