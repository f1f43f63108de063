#!/usr/bin/env bash
# test_examples.sh BUILD_DIR SCENARIO — runs the examples the way a user
# would, over loopback and AF_UNIX only, and checks what they print and how
# they exit. Run by ctest (examples/CMakeLists.txt), one scenario per test.
#
# Every example runs under `timeout`; servers start on port 0 and we read the
# port from their "listening on ADDRESS:PORT" line; every wait is a bounded
# poll. Exit status: 0 pass, 1 fail, 77 skip (ctest's SKIP_RETURN_CODE).
set -u

BIN=${1:?usage: test_examples.sh BUILD_DIR SCENARIO}
SCENARIO=${2:?usage: test_examples.sh BUILD_DIR SCENARIO}
TO=30 # seconds: the limit for any one program (ASan builds are slower)
# --foreground: `timeout` passes a signal we send it (kill -TERM $server) to
# the program alone. Without it, timeout also sends SIGCONT to the whole
# process group right after, and a SIGCONT discards a pending SIGSTOP: when it
# lands while LeakSanitizer stops the exiting program (ptrace attach, which
# queues a SIGSTOP), the stop never comes and the leak check waits forever.
# That hung echo_sigterm, nc_timeout and udp_echo under ASan, often on one
# CPU (taskset -c 0). -k 5: a program that ignores the TERM at $TO is killed.
TIMEOUT_OPTS="--foreground -k 5"
# A cross build runs the programs through an emulator (qemu-aarch64-static ...)
read -r -a RUN <<<"${CTRIO_EXAMPLE_EMULATOR:-}"


for tool in timeout mkfifo cmp head; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "SKIP: '$tool' is not installed"
        exit 77
    fi
done

T=$(mktemp -d "${TMPDIR:-/tmp}/ctrio-examples.XXXXXX")
PIDS=()
cleanup() {
    exec 3>&- 4>&- 2>/dev/null
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null
    done
    rm -rf "$T"
}
trap cleanup EXIT

dump() {
    for f in "$T"/*.out "$T"/*.err; do
        [ -f "$f" ] || continue
        echo "---- $(basename "$f")"
        if [ -s "$f" ] && ! grep -Iq . "$f"; then
            echo "($(wc -c <"$f") bytes of binary data)"
        else
            head -c 2000 "$f"
        fi
    done
}
fail() {
    echo "FAIL [$SCENARIO]: $*"
    dump
    exit 1
}
ok() { echo "ok: $*"; }

# start NAME PROGRAM ARGS...: run in the background, output in $T/NAME.out
# and $T/NAME.err, stdin from $STDIN (default /dev/null); pid in $LAST_PID.
start() {
    local name=$1
    shift
    rm -f "$T/$name.out" "$T/$name.err" # a stale "listening on" line would lie
    # 3>&- 4>&-: the fifo writers we hold must not leak into the children
    timeout $TIMEOUT_OPTS "$TO" "${RUN[@]}" "$BIN/$@" <"${STDIN:-/dev/null}" >"$T/$name.out" 2>"$T/$name.err" 3>&- 4>&- &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# finish PID EXPECTED_STATUS WHAT
finish() {
    wait "$1"
    local rc=$?
    [ "$rc" -eq "$2" ] || fail "$3: exit status $rc, expected $2"
    ok "$3 exited with status $rc"
}

# wait_for FILE PATTERN: until PATTERN (grep -E) shows up in FILE, 10 s at most
wait_for() {
    local i
    for ((i = 0; i < 200; i++)); do
        grep -Eq -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    fail "no '$2' in $(basename "$1") after 10 s"
}

# port_of FILE: sets $port from the first "listening on ...:PORT" line of
# FILE (servers print it on stdout, nc on stderr)
port_of() {
    wait_for "$1" '^listening on .*:[0-9]+$'
    port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$1" | head -n 1)
    [ -n "$port" ] || fail "no port in $(basename "$1")"
}

# run NAME PROGRAM ARGS...: in the foreground, with $STDIN; sets $RC
run() {
    local name=$1
    shift
    rm -f "$T/$name.out" "$T/$name.err"
    timeout $TIMEOUT_OPTS "$TO" "${RUN[@]}" "$BIN/$@" <"${STDIN:-/dev/null}" >"$T/$name.out" 2>"$T/$name.err" 3>&- 4>&-
    RC=$?
}

expect_output() { # NAME EXPECTED_TEXT
    printf '%s' "$2" | cmp -s - "$T/$1.out" || fail "$1 printed something else than expected"
    ok "$1 printed what was expected"
}

check_no_sanitizer_reports() {
    # sanitizers, and valgrind's memcheck (its errors, and its leak reports)
    if grep -lE 'ERROR: [A-Za-z]*Sanitizer|runtime error:|WARNING: ThreadSanitizer|^==[0-9]+== (Invalid |Conditional jump|Syscall param|Use of uninitialised|Mismatched free|Source and destination overlap|.* are definitely lost|.* are indirectly lost)' "$T"/*.err \
        2>/dev/null; then
        fail "sanitizer or valgrind report"
    fi
}

# A test payload: 1 MiB of bytes that are not all text.
payload() {
    head -c 1048576 /dev/urandom >"$T/payload.bin"
}

case "$SCENARIO" in
echo)
    start server echo_server 0 127.0.0.1
    server=$LAST_PID
    port_of "$T/server.out"
    run client echo_client 127.0.0.1 "$port" hello "big world"
    [ "$RC" -eq 0 ] || fail "echo_client exited with $RC"
    expect_output client $'hello\nbig world\n'

    printf 'one\ntwo\nthree\n' >"$T/lines.txt"
    STDIN=$T/lines.txt run stdin_client echo_client localhost "$port"
    [ "$RC" -eq 0 ] || fail "echo_client (stdin, localhost) exited with $RC"
    expect_output stdin_client $'one\ntwo\nthree\n'

    # 1 MiB through nc (stdin from a regular file: read in a worker thread)
    payload
    STDIN=$T/payload.bin run bulk nc 127.0.0.1 "$port"
    [ "$RC" -eq 0 ] || fail "nc (1 MiB to echo_server) exited with $RC"
    cmp -s "$T/payload.bin" "$T/bulk.out" || fail "1 MiB echoed back differs"
    ok "1 MiB echoed back intact"

    kill -TERM "$server"
    finish "$server" 0 "echo_server after SIGTERM"
    ;;

echo_sigterm)
    for sig in TERM INT; do
        start server echo_server 0 127.0.0.1
        server=$LAST_PID
        port_of "$T/server.out"
        # a client connected and idle when the signal comes
        rm -f "$T/in.fifo"
        mkfifo "$T/in.fifo"
        STDIN=$T/in.fifo start client nc 127.0.0.1 "$port"
        client=$LAST_PID
        exec 3>"$T/in.fifo"
        echo ping >&3
        wait_for "$T/client.out" '^ping$'
        kill -"$sig" "$server"
        finish "$server" 0 "echo_server after SIG$sig with a client connected"
        grep -q "shutting down" "$T/server.err" || fail "no 'shutting down' message"
        exec 3>&- # the client's stdin ends: it sends EOF and exits
        finish "$client" 0 "nc client of the stopped server"
    done
    ;;

nc_tcp | nc_unix)
    if [ "$SCENARIO" = nc_tcp ]; then
        listen_args=(-l 127.0.0.1 0)
    else
        sock=$T/nc.sock
        listen_args=(-l -U "$sock")
    fi
    # both directions at once, each side's stdin a small file (read in a
    # worker thread: epoll cannot watch regular files)
    printf 'from the listener\n' >"$T/l.in"
    printf 'from the client\n' >"$T/c.in"
    STDIN=$T/l.in start listener nc "${listen_args[@]}"
    listener=$LAST_PID
    if [ "$SCENARIO" = nc_tcp ]; then
        port_of "$T/listener.err"
        connect_args=(127.0.0.1 "$port")
    else
        wait_for "$T/listener.err" "^listening on $sock\$"
        [ -S "$sock" ] || fail "no socket at $sock"
        connect_args=(-U "$sock")
    fi
    STDIN=$T/c.in run client nc "${connect_args[@]}"
    [ "$RC" -eq 0 ] || fail "nc client exited with $RC"
    finish "$listener" 0 "nc listener"
    expect_output client $'from the listener\n'
    expect_output listener $'from the client\n'

    # 1 MiB from a pipe to the listener, and the listener's stdin a pipe too
    payload
    rm -f "$T/l.fifo"
    mkfifo "$T/l.fifo"
    STDIN=$T/l.fifo start listener nc "${listen_args[@]}"
    listener=$LAST_PID
    exec 4>"$T/l.fifo"
    if [ "$SCENARIO" = nc_tcp ]; then
        port_of "$T/listener.err"
        connect_args=(127.0.0.1 "$port")
    else
        wait_for "$T/listener.err" "^listening on $sock\$"
    fi
    STDIN=$T/payload.bin start client nc "${connect_args[@]}"
    client=$LAST_PID
    echo "bye from the listener" >&4
    exec 4>&-
    finish "$client" 0 "nc client (1 MiB)"
    finish "$listener" 0 "nc listener (1 MiB)"
    cmp -s "$T/payload.bin" "$T/listener.out" || fail "the 1 MiB arrived changed"
    ok "1 MiB arrived intact"
    expect_output client $'bye from the listener\n'

    if [ "$SCENARIO" = nc_unix ]; then
        [ ! -e "$sock" ] || fail "the listener left $sock behind"
        ok "the listener removed its socket file"
        : >"$sock" # a path that exists is refused, and left alone
        run taken nc -l -U "$sock"
        [ "$RC" -eq 1 ] || fail "nc -l -U on an existing path: status $RC, expected 1"
        [ -f "$sock" ] || fail "nc -l -U removed a file that was not its own"
        ok "nc -l -U refuses an existing path and leaves it alone"
    fi
    ;;

echo_ulimit)
    # Out of descriptors (ulimit -n 6: the run, the listener and its spare
    # leave none for the signal watcher), echo_server stops with status 1
    # and says why, whichever step ran out: it exited silently before.
    [ ${#RUN[@]} -eq 0 ] || { echo "SKIP: the emulator needs descriptors of its own"; exit 77; }
    (ulimit -n 6 && run lonely echo_server 0 127.0.0.1 && echo "$RC" >"$T/lonely.rc")
    [ "$(cat "$T/lonely.rc")" -eq 1 ] || fail "echo_server under ulimit -n 6: status $(cat "$T/lonely.rc"), expected 1"
    grep -Eq '^echo_server: cannot [a-z A-Z]+: Too many open files$' "$T/lonely.err" ||
        fail "no message under ulimit -n 6: $(cat "$T/lonely.err")"
    ok "echo_server under ulimit -n 6 says why it stops: $(tail -n 1 "$T/lonely.err")"
    ;;

nc_udp)
    printf 'reply\n' >"$T/l.in"
    printf 'hello over udp\n' >"$T/c.in"
    # (-w 2: the client has 2 s to come, however loaded the machine)
    STDIN=$T/l.in start listener nc -l -u -w 2 127.0.0.1 0
    listener=$LAST_PID
    port_of "$T/listener.err"
    STDIN=$T/c.in run client nc -u -w 1 127.0.0.1 "$port"
    [ "$RC" -eq 0 ] || fail "nc -u client exited with $RC"
    finish "$listener" 0 "nc -l -u listener (after 2 s of quiet)"
    expect_output listener $'hello over udp\n'
    expect_output client $'reply\n'
    ;;

nc_timeout)
    # -w on a listener nobody connects to: -ETIMEDOUT, status 1
    run lonely nc -l -w 0.3 127.0.0.1 0
    [ "$RC" -eq 1 ] || fail "nc -l -w 0.3 with no peer: status $RC, expected 1"
    grep -q "timed out" "$T/lonely.err" || fail "no timeout message"
    ok "nc -l -w 0.3 gives up when nobody comes"

    # -w as an idle timeout: a silent peer is dropped after 1 s (which is
    # also how long the client has to connect)
    start listener nc -l -w 1 127.0.0.1 0
    listener=$LAST_PID
    port_of "$T/listener.err"
    rm -f "$T/in.fifo"
    mkfifo "$T/in.fifo"
    STDIN=$T/in.fifo start client nc 127.0.0.1 "$port"
    client=$LAST_PID
    exec 3>"$T/in.fifo"
    finish "$listener" 0 "nc -l -w 1 with a silent peer"
    grep -q "nothing for 1 s" "$T/listener.err" || fail "no idle message"
    # Ctrl-C ends the client cleanly (its stdin is still open)
    kill -INT "$client"
    finish "$client" 0 "nc client after SIGINT"
    exec 3>&-

    # connecting to a port nobody listens on: refused, status 1
    start server echo_server 0 127.0.0.1
    server=$LAST_PID
    port_of "$T/server.out"
    kill -TERM "$server"
    finish "$server" 0 "echo_server"
    run refused nc -w 5 127.0.0.1 "$port"
    [ "$RC" -eq 1 ] || fail "nc to a closed port: status $RC, expected 1"
    grep -qi "refused" "$T/refused.err" || fail "no 'refused' message"
    ok "nc to a closed port reports the refusal"
    ;;

chat)
    start server chat_server 0 127.0.0.1
    server=$LAST_PID
    port_of "$T/server.out"
    mkfifo "$T/a.fifo" "$T/b.fifo"
    STDIN=$T/b.fifo start b nc 127.0.0.1 "$port"
    b=$LAST_PID
    exec 3>"$T/b.fifo"
    wait_for "$T/server.err" 'client 1 joined'
    STDIN=$T/a.fifo start a nc 127.0.0.1 "$port"
    a=$LAST_PID
    exec 4>"$T/a.fifo"
    wait_for "$T/server.err" 'client 2 joined'
    wait_for "$T/b.out" '^\* client 2 joined$'

    echo "hello from A" >&4
    wait_for "$T/b.out" '^\[2\] hello from A$'
    echo "hi from B" >&3
    wait_for "$T/a.out" '^\[1\] hi from B$'
    ! grep -q 'hello from A' "$T/a.out" || fail "A got its own line back"
    ! grep -q 'hi from B' "$T/b.out" || fail "B got its own line back"
    ok "each client got the other's line, and not its own"

    exec 4>&- # A leaves
    finish "$a" 0 "client A (stdin ended)"
    wait_for "$T/b.out" '^\* client 2 left$'
    ok "B was told that A left"

    kill -TERM "$server" # B still connected
    finish "$server" 0 "chat_server after SIGTERM with a client connected"
    exec 3>&-
    finish "$b" 0 "client B"
    ;;

dns_lookup)
    run names dns_lookup -t 10 localhost 127.0.0.1 ::1
    [ "$RC" -eq 0 ] || fail "dns_lookup localhost 127.0.0.1 ::1: status $RC"
    grep -Eq '^localhost +(127\.0\.0\.1|::1)$' "$T/names.out" || fail "no address for localhost"
    grep -Eq '^127\.0\.0\.1 +127\.0\.0\.1$' "$T/names.out" || fail "127.0.0.1 not echoed"
    grep -Eq '^::1 +::1$' "$T/names.out" || fail "::1 not echoed"
    ok "dns_lookup found localhost and the numeric names"

    run expired dns_lookup -t 0 localhost
    [ "$RC" -eq 1 ] || fail "dns_lookup -t 0: status $RC, expected 1"
    grep -Eq '^localhost +error: no answer within 0 s$' "$T/expired.out" ||
        fail "no deadline message"
    ok "dns_lookup -t 0 reports the deadline"

    # a name that cannot exist (RFC 6761): fails, or times out without a network
    run invalid dns_lookup -t 2 localhost nothing.invalid
    [ "$RC" -eq 1 ] || fail "dns_lookup nothing.invalid: status $RC, expected 1"
    grep -Eq '^nothing\.invalid +error: ' "$T/invalid.out" || fail "no error for nothing.invalid"
    grep -Eq '^localhost +' "$T/invalid.out" || fail "localhost not found next to a failure"
    ok "a failing name does not stop the others"
    ;;

udp_echo)
    run pair udp_echo pair
    [ "$RC" -eq 0 ] || fail "udp_echo pair: status $RC"
    grep -q '^server on 127\.0\.0\.1:[0-9]*$' "$T/pair.out" || fail "no server line"
    sed -i 1d "$T/pair.out"
    expect_output pair $'ping\nhello, UDP\nbye\n'

    start server udp_echo server 0 127.0.0.1
    server=$LAST_PID
    port_of "$T/server.out"
    run client udp_echo client 127.0.0.1 "$port" one "two words"
    [ "$RC" -eq 0 ] || fail "udp_echo client: status $RC"
    expect_output client $'one\ntwo words\n'
    kill -TERM "$server"
    finish "$server" 0 "udp_echo server after SIGTERM"
    ;;

*)
    fail "unknown scenario '$SCENARIO'"
    ;;
esac

check_no_sanitizer_reports
echo "PASS [$SCENARIO]"
exit 0
