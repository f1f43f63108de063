#!/bin/sh
# check_layers.sh CC SOURCE_DIR: the layering include -> core -> net ->
# testing has no arrow going up (issue #13). No file of src/core includes a
# header of src/net, src/testing or src/tls, nor names (outside comments) a
# function those layers define or a type they own: the socket hooks, say,
# are the net layer's state in a run (src/core/layer.c), not the core's.
set -u
CC=$1 SRC=$2
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT

# The functions the layers above define: a definition starts a line.
grep -ho '^[a-zA-Z][^(=;]*[ *]ctrio_\{1,2\}[a-z0-9_]*(' \
    "$SRC"/src/net/*.c "$SRC"/src/testing/*.c "$SRC"/src/tls/*.c 2>/dev/null |
    grep -o 'ctrio_\{1,2\}[a-z0-9_]*($' | tr -d '(' >"$T/names"
# Their types: those of their headers, and the public ones of sockets,
# streams, listeners, name lookup, the fake network, memory streams, TLS.
grep -ho '\(struct\|typedef\|}\) *ctrio_\{1,2\}[a-z0-9_]*' \
    "$SRC"/src/net/*.h "$SRC"/src/tls/*.h 2>/dev/null |
    grep -o 'ctrio_\{1,2\}[a-z0-9_]*' >>"$T/names"
grep -ho '\bctrio_\(socket\|stream\|listener\|hostname\|fake\|memory\|tls\|serve\)[a-z0-9_]*' \
    "$SRC"/include/*.h >>"$T/names"
sort -u "$T/names" -o "$T/names"
[ -s "$T/names" ] || { echo "FAIL: found no names of the layers above"; exit 1; }

status=0
for f in "$SRC"/src/core/*.c "$SRC"/src/core/*.h; do
    # Comments may mention the layers above (what a call is for); code may not.
    "$CC" -fpreprocessed -dD -E -P -x c "$f" -o "$T/code" 2>/dev/null || cp "$f" "$T/code"
    if grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*/\)\?\(net\|tls\)\.h"\|"[^"]*\(net\|testing\|tls\)/' \
        "$T/code"; then
        echo "FAIL: ${f#"$SRC"/} includes a header of a layer above"
        status=1
    fi
    if grep -nwF -f "$T/names" "$T/code"; then
        echo "FAIL: ${f#"$SRC"/} names a function or type of a layer above"
        status=1
    fi
done
[ $status -eq 0 ] && echo "src/core: no arrow going up ($(wc -l <"$T/names") names of the layers above checked)"
exit $status
