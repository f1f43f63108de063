#!/bin/sh
# abi_check.sh ABIDIFF SOURCE_DIR BUILD_DIR: compare each shared library of
# the build with its baseline in abi/ (abidw's XML of the last release;
# README "Versions and ABI"), and fail on any change but an addition: a
# function or variable removed or changed, a type of the API whose size,
# layout or fields changed. --no-added-syms leaves new calls out, and
# libabigail takes a field put in a struct's reserved room through an
# anonymous union (ctrio.h, "Room to change") for the harmless change it is.
# abidiff's status is a bit set (1 error, 2 usage, 4 change, 8 incompatible):
# any bit fails here, with its report.
set -u
ABIDIFF=$1 SRC=$2 BUILD=$3
status=0
checked=""
for lib in libctrio libctrio_tls; do
    base=$SRC/abi/$lib.abi
    so=$BUILD/$lib.so
    [ -f "$so" ] || continue
    [ -f "$base" ] || { echo "FAIL: $so has no baseline $base (cmake --build build --target abi-baseline)"; status=1; continue; }
    if ! "$ABIDIFF" --no-added-syms --headers-dir2 "$SRC/include" "$base" "$so"; then
        echo "FAIL: $lib.so breaks the ABI of $base (above). If that is the decision: a new"
        echo "      MAJOR (0.MINOR before 1.0), SONAME with it, baseline regenerated at the release"
        status=1
    fi
    checked="$checked $lib"
done
[ -n "$checked" ] || { echo "FAIL: no shared library in $BUILD"; exit 1; }
[ "$status" = 0 ] && echo "PASS: the ABI of$checked is compatible with abi/"
exit "$status"
