#!/usr/bin/env bash
# test_code.sh BUILD_DIR SCENARIO -- runs the documentation's programs that
# need a peer (docs/CMakeLists.txt: "docs-test: SCENARIO"), on loopback, each
# under a timeout. Exit status: 0 pass, 1 fail, 77 skip.
set -u
BIN=${1:?usage: test_code.sh BUILD_DIR SCENARIO}
SCENARIO=${2:?usage: test_code.sh BUILD_DIR SCENARIO}
# Run once per backend ($CTRIO_BACKEND, docs/CMakeLists.txt): skip where
# the one asked for cannot start here (tests/backend_probe says why).
# A cross build runs the programs through its emulator (qemu-aarch64-static ...).
EMU=${CTRIO_DOCS_EMULATOR:-}
if [ -n "${CTRIO_BACKEND:-}" ] && [ "$CTRIO_BACKEND" != epoll ] && [ -x "$BIN/../tests/backend_probe" ]; then
    if ! why=$($EMU "$BIN/../tests/backend_probe"); then
        echo "SKIP: CTRIO_BACKEND=$CTRIO_BACKEND: $why"
        exit 77
    fi
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/ctrio-docs.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*"
    for f in "$T"/*; do echo "---- $(basename "$f")"; head -c 2000 "$f"; done
    exit 1
}
# A free port on 127.0.0.1 (the servers of the tutorial take a port, as Trio's do).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# wait_port PORT: until something listens there (at most 10 s)
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

case "$SCENARIO" in
echo) # the tutorial's echo server, and its client sending 3 messages
    port=$(free_port)
    timeout 30 $EMU "$BIN/echo_server" "$port" >"$T/server.out" 2>&1 &
    PIDS+=($!)
    wait_port "$port" || fail "echo_server does not listen on $port"
    timeout 30 $EMU "$BIN/echo_client" "$port" 3 >"$T/client.out" 2>&1 || fail "echo_client failed"
    got=$(grep -c "^receiver: got data" "$T/client.out")
    [ "$got" -ge 1 ] || fail "no echo"
    n=$(grep -o "I believe in you!" "$T/client.out" | wc -l)
    [ "$n" = 6 ] || fail "expected 3 messages sent and echoed (6 lines), got $n"
    grep -q "^receiver: connection closed" "$T/client.out" || fail "no end of stream"
    for _ in $(seq 50); do grep -q "connection closed" "$T/server.out" && break; sleep 0.1; done
    grep -q "^echo_server: connection closed" "$T/server.out" || fail "server did not see the close"
    ;;
*)
    echo "test_code.sh: unknown scenario $SCENARIO"
    exit 1
    ;;
esac
echo "PASS: $SCENARIO"
