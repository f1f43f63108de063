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

# Run once per backend ($CTRIO_BACKEND, examples/CMakeLists.txt): skip where
# the one asked for cannot start here (tests/backend_probe says why).
if [ -n "${CTRIO_BACKEND:-}" ] && [ "$CTRIO_BACKEND" != epoll ] && [ -x "$BIN/../tests/backend_probe" ]; then
    if ! why=$("${RUN[@]}" "$BIN/../tests/backend_probe"); then
        echo "SKIP: CTRIO_BACKEND=$CTRIO_BACKEND: $why"
        exit 77
    fi
fi

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

# start_tool / run_tool NAME COMMAND ARGS...: as start and run, for a peer
# that is not ours (openssl, python3, curl): not from $BIN, no emulator;
# start_tool runs in directory $CWD if set.
start_tool() {
    local name=$1
    shift
    rm -f "$T/$name.out" "$T/$name.err"
    (cd "${CWD:-.}" && exec timeout $TIMEOUT_OPTS "$TO" "$@" <"${STDIN:-/dev/null}" >"$T/$name.out" 2>"$T/$name.err" 3>&- 4>&-) &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}
run_tool() {
    local name=$1
    shift
    rm -f "$T/$name.out" "$T/$name.err"
    timeout $TIMEOUT_OPTS "$TO" "$@" <"${STDIN:-/dev/null}" >"$T/$name.out" 2>"$T/$name.err" 3>&- 4>&-
    RC=$?
}

# need TOOL...: skip the scenario unless every tool is installed
need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || { echo "SKIP: '$tool' is not installed"; exit 77; }
    done
}

# ---- network namespaces (ping, netlink_watch, packet_capture) -------------
# need_netns WHY: root, and the tools to make a namespace of our own, or skip
# saying what is missing. The namespace dies with the program started in it
# (unshare -n PROGRAM): nothing to clean up, no host setting touched.
need_netns() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "SKIP: $1 needs root (a network namespace of its own)"
        exit 77
    fi
    need unshare nsenter ip pgrep
    if ! timeout 5 unshare -n true 2>/dev/null; then
        echo "SKIP: $1: unshare -n is refused here (no CAP_SYS_ADMIN in this container?)"
        exit 77
    fi
}

# ns_of PID: sets $nspid to the program that `start_tool NAME unshare -n ...`
# started (timeout's child), whose namespace `in_ns` enters.
ns_of() {
    local i
    nspid=
    for ((i = 0; i < 100; i++)); do
        nspid=$(pgrep -P "$1" | head -n 1)
        [ -n "$nspid" ] && return 0
        sleep 0.05
    done
    fail "no child process of $1"
}
in_ns() { # COMMAND ARGS...: in $nspid's network namespace, under timeout
    timeout $TIMEOUT_OPTS "$TO" nsenter -t "$nspid" -n "$@" >>"$T/ns.out" 2>>"$T/ns.err" 3>&- 4>&- ||
        fail "in the namespace: $*"
}

# in_order FILE PATTERN...: each pattern (grep -E) matches a line of FILE
# after the line the previous one matched
in_order() {
    local file=$1 line=0 n
    shift
    for pat in "$@"; do
        n=$(tail -n +"$((line + 1))" "$file" | grep -nE -m 1 -- "$pat" | cut -d: -f1)
        [ -n "$n" ] || fail "no '$pat' in $(basename "$file") after line $line"
        line=$((line + n))
    done
}

# wait_size FILE BYTES: until FILE holds BYTES bytes, 20 s at most
wait_size() {
    local i
    for ((i = 0; i < 400; i++)); do
        [ "$(stat -c %s "$1" 2>/dev/null || echo 0)" -ge "$2" ] && return 0
        sleep 0.05
    done
    fail "$(basename "$1") holds $(stat -c %s "$1" 2>/dev/null || echo 0) bytes, not $2, after 20 s"
}

# s_server_port FILE: sets $port from openssl s_server's "ACCEPT HOST:PORT"
s_server_port() {
    wait_for "$1" '^ACCEPT .*:[0-9]+$'
    port=$(sed -n 's/^ACCEPT .*:\([0-9]*\)$/\1/p' "$1" | head -n 1)
}

# Certificates for the TLS scenarios, made with the openssl CLI in $T:
# ECDSA P-256 CAs ca.pem and other.pem (a CA nobody trusts), and leaves
# NAME.pem / NAME-key.pem: leaf (127.0.0.1 and localhost, from ca),
# wrong (wrong.example only, from ca), stranger (127.0.0.1 and localhost,
# from other).
gen_certs() {
    local c
    for c in ca other; do
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -keyout "$T/$c-key.pem" -out "$T/$c.pem" -subj "/CN=ctrio test CA $c" \
            -addext basicConstraints=critical,CA:TRUE \
            -addext keyUsage=critical,keyCertSign,cRLSign >/dev/null 2>&1 ||
            fail "openssl cannot make a CA"
    done
    gen_leaf leaf ca "IP:127.0.0.1,DNS:localhost"
    gen_leaf wrong ca "DNS:wrong.example"
    gen_leaf stranger other "IP:127.0.0.1,DNS:localhost"
}
gen_leaf() { # NAME CA SUBJECT_ALT_NAMES
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$3" >"$T/$1.ext"
    { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
        -keyout "$T/$1-key.pem" -out "$T/$1.csr" &&
        openssl x509 -req -in "$T/$1.csr" -CA "$T/$2.pem" -CAkey "$T/$2-key.pem" -days 2 \
            -set_serial "0x$(od -An -N8 -tx1 /dev/urandom | tr -d ' ')" \
            -extfile "$T/$1.ext" -out "$T/$1.pem"; } >/dev/null 2>&1 ||
        fail "openssl cannot make the $1 certificate"
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

echo_runs)
    # two runs on one port (SO_REUSEPORT): "listening on" printed once, each
    # connection answered whichever run the kernel gave it to, then SIGTERM
    # stops the whole group with status 0
    start server echo_server --runs 2 0 127.0.0.1
    server=$LAST_PID
    port_of "$T/server.out"
    for i in 1 2 3 4 5 6 7 8; do
        run client echo_client 127.0.0.1 "$port" "hello $i"
        [ "$RC" -eq 0 ] || fail "echo_client $i exited with $RC"
        expect_output client "hello $i"$'\n'
    done
    [ "$(grep -c '^listening on' "$T/server.out")" -eq 1 ] ||
        fail "echo_server --runs 2 printed its listening lines more than once"
    ok "one 'listening on' line for two runs"
    kill -TERM "$server"
    finish "$server" 0 "echo_server --runs 2 after SIGTERM"
    grep -q "shutting down" "$T/server.err" || fail "no 'shutting down' message"
    run bad echo_server --runs -1 0
    [ "$RC" -eq 2 ] || fail "echo_server --runs -1: status $RC, expected 2"
    ok "echo_server --runs -1 is a usage error"
    run bad echo_server --incoming-cpu 0
    [ "$RC" -eq 2 ] || fail "echo_server --incoming-cpu without --runs: status $RC, expected 2"
    ok "--incoming-cpu without --runs is a usage error"
    # --runs 2 --incoming-cpu: clients on the first run's CPU all land on that
    # run, so the other run's thread never runs (its CPU time stays put); by
    # the SO_REUSEPORT hash alone, 16 clients all miss it once in 65536.
    # Needs Linux 6.2 (reuseport honours SO_INCOMING_CPU since then), two CPUs
    # and no emulator (the pid must be echo_server's own).
    kver=$(uname -r | awk -F. '{ print $1 * 1000 + $2 }')
    if [ "${#RUN[@]}" -eq 0 ] && [ "$kver" -ge 6002 ] && [ "$(nproc)" -ge 2 ] &&
        command -v taskset >/dev/null 2>&1; then
        start server echo_server --runs 2 --incoming-cpu 0 127.0.0.1
        server=$LAST_PID
        port_of "$T/server.out"
        # (timeout runs the server as its child)
        spid=$(cat /proc/"$server"/task/"$server"/children 2>/dev/null | awk '{ print $1 }')
        [ -n "$spid" ] || fail "no echo_server process under timeout $server"
        # both listeners open before any client (a run still starting would
        # take no connection whatever the option does): LISTEN (0A) entries
        # of the port in /proc/net/tcp
        hport=$(printf '%04X' "$port")
        for ((i = 0; i < 200; i++)); do
            [ "$(awk -v p=":$hport" '$2 ~ p "$" && $4 == "0A"' /proc/"$spid"/net/tcp | wc -l)" -ge 2 ] && break
            sleep 0.05
        done
        [ "$i" -lt 200 ] || fail "echo_server --runs 2 --incoming-cpu: not 2 listeners on port $port"
        # the run threads are the ones pinned to a single CPU
        runs=$(for t in /proc/"$spid"/task/*; do
            l=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' "$t/status")
            [[ "$l" =~ ^[0-9]+$ ]] && echo "$l ${t##*/}"
        done | sort -n)
        [ "$(wc -l <<<"$runs")" -eq 2 ] || fail "echo_server --runs 2: not 2 pinned threads: $runs"
        read -r cpu0 _ <<<"$(head -n 1 <<<"$runs")"
        read -r _ other <<<"$(tail -n 1 <<<"$runs")"
        t0=$(cut -d' ' -f1 /proc/"$spid"/task/"$other"/schedstat)
        for i in $(seq 1 16); do
            run_tool client taskset -c "$cpu0" "$BIN/echo_client" 127.0.0.1 "$port" "steered $i"
            [ "$RC" -eq 0 ] || fail "echo_client $i on CPU $cpu0 exited with $RC"
            expect_output client "steered $i"$'\n'
        done
        t1=$(cut -d' ' -f1 /proc/"$spid"/task/"$other"/schedstat)
        [ "$t1" = "$t0" ] ||
            fail "--incoming-cpu: 16 clients on CPU $cpu0, yet the other run ran ($t0 -> $t1 ns)"
        ok "--incoming-cpu: 16 clients on CPU $cpu0 all served by the run on that CPU"
        kill -TERM "$server"
        finish "$server" 0 "echo_server --runs 2 --incoming-cpu after SIGTERM"
    else
        echo "(--incoming-cpu steering not checked: needs Linux 6.2, 2 CPUs, taskset, no emulator)"
    fi
    check_no_sanitizer_reports
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

ping)
    # On the host first: where net.ipv4.ping_group_range lets our group in,
    # it answers; where not ("1 0", the kernel's default), ping must say so.
    run host ping -c 1 -W 2 127.0.0.1
    if [ "$RC" -eq 0 ]; then
        grep -q '^1 packets transmitted, 1 received, 0% packet loss$' "$T/host.out" ||
            fail "no statistics line"
        ok "ping on the host"
    elif [ "$RC" -eq 2 ] && grep -q 'net.ipv4.ping_group_range' "$T/host.err"; then
        ok "refused on the host, saying why: $(head -n 1 "$T/host.err")"
    else
        fail "ping 127.0.0.1 on the host: status $RC"
    fi
    # The rest in a namespace of our own, where we may let every group in
    # (and make it ignore echo requests, for the deadline): root only.
    if [ "$(id -u)" -ne 0 ] && [ "$RC" -eq 0 ]; then
        echo "SKIP: ping: the deadline checks need root (a network namespace of its own); the host ping passed"
        exit 77
    fi
    need_netns "ping (host: $(head -n 1 "$T/host.err" 2>/dev/null))"
    NS=(unshare -n sh -c 'ip link set lo up && echo "0 2147483647" >/proc/sys/net/ipv4/ping_group_range && exec "$@"' sh)
    run_tool v4 "${NS[@]}" "${RUN[@]}" "$BIN/ping" -c 3 -i 0.2 127.0.0.1
    [ "$RC" -eq 0 ] || fail "ping 127.0.0.1: status $RC"
    in_order "$T/v4.out" '^PING 127\.0\.0\.1 \(127\.0\.0\.1\): 56 data bytes$' \
        '^64 bytes from 127\.0\.0\.1: icmp_seq=1 time=[0-9]+\.[0-9]{3} ms$' \
        '^64 bytes from 127\.0\.0\.1: icmp_seq=2 time=[0-9.]+ ms$' \
        '^64 bytes from 127\.0\.0\.1: icmp_seq=3 time=[0-9.]+ ms$' \
        '^--- 127\.0\.0\.1 ping statistics ---$' \
        '^3 packets transmitted, 3 received, 0% packet loss$' \
        '^rtt min/avg/max = [0-9.]+/[0-9.]+/[0-9.]+ ms$'
    ok "ping 127.0.0.1: 3 replies, statistics"
    if [ -e /proc/net/if_inet6 ]; then
        run_tool v6 "${NS[@]}" "${RUN[@]}" "$BIN/ping" -c 2 -i 0.2 ::1
        [ "$RC" -eq 0 ] || fail "ping ::1: status $RC"
        in_order "$T/v6.out" '^64 bytes from ::1: icmp_seq=1 time=' '^64 bytes from ::1: icmp_seq=2 time=' \
            '^2 packets transmitted, 2 received, 0% packet loss$'
        ok "ping ::1: 2 replies"
    fi
    # No answer: each probe gives up at its own deadline, the program goes on
    IGNORING=(unshare -n sh -c 'ip link set lo up && echo "0 2147483647" >/proc/sys/net/ipv4/ping_group_range && echo 1 >/proc/sys/net/ipv4/icmp_echo_ignore_all && exec "$@"' sh)
    run_tool silent "${IGNORING[@]}" "${RUN[@]}" "$BIN/ping" -c 2 -i 0.1 -W 0.3 127.0.0.1
    [ "$RC" -eq 1 ] || fail "ping with no replies: status $RC, expected 1"
    in_order "$T/silent.out" '^no reply from 127\.0\.0\.1 for icmp_seq=1 within 0\.3 s$' \
        '^no reply from 127\.0\.0\.1 for icmp_seq=2 within 0\.3 s$' \
        '^2 packets transmitted, 0 received, 100% packet loss$'
    ok "ping with echo ignored: each probe ended by its deadline, status 1"
    # Ctrl-C: the statistics, and status 0
    start_tool forever "${NS[@]}" "${RUN[@]}" "$BIN/ping" -c 0 -i 0.1 127.0.0.1
    pinger=$LAST_PID
    wait_for "$T/forever.out" '^64 bytes from 127\.0\.0\.1: icmp_seq=2 '
    kill -INT "$pinger"
    finish "$pinger" 0 "ping -c 0 after SIGINT"
    grep -Eq '^[0-9]+ packets transmitted, [0-9]+ received' "$T/forever.out" || fail "no statistics after SIGINT"
    ;;

netlink_watch)
    need_netns netlink_watch
    start_tool watch unshare -n "${RUN[@]}" "$BIN/netlink_watch"
    watcher=$LAST_PID
    wait_for "$T/watch.out" '^watching netlink:[0-9]+:0x111$'
    ns_of "$watcher"
    in_ns ip link set lo up
    wait_for "$T/watch.out" '^link lo up$'
    in_ns ip addr add 10.9.8.7/24 dev lo
    wait_for "$T/watch.out" '^addr added 10\.9\.8\.7/24 on lo$'
    in_ns ip addr del 10.9.8.7/24 dev lo
    wait_for "$T/watch.out" '^addr removed 10\.9\.8\.7/24 on lo$'
    if [ -e /proc/net/if_inet6 ]; then
        in_ns ip addr add 2001:db8::7/64 dev lo
        wait_for "$T/watch.out" '^addr added 2001:db8::7/64 on lo$'
        in_ns ip addr del 2001:db8::7/64 dev lo
        wait_for "$T/watch.out" '^addr removed 2001:db8::7/64 on lo$'
    fi
    in_ns ip link set lo down
    wait_for "$T/watch.out" '^link lo down$'
    kill -TERM "$watcher"
    finish "$watcher" 0 "netlink_watch after SIGTERM"
    in_order "$T/watch.out" '^watching ' '^link lo up$' '^addr added 10\.9\.8\.7/24 on lo$' \
        '^addr removed 10\.9\.8\.7/24 on lo$' '^link lo down$'
    # every line is one of the documented shapes
    if grep -vE '^(watching netlink:[0-9]+:0x111|addr (added|removed) [0-9a-f.:]+/[0-9]+ on lo|link lo (up|down))$' "$T/watch.out"; then
        fail "netlink_watch printed a line of another shape"
    fi
    ok "netlink_watch saw the link and address changes made in its namespace, in order"
    ;;

packet_capture)
    if [ "$(id -u)" -ne 0 ]; then
        run refused packet_capture -c 1 -w 1
        [ "$RC" -eq 2 ] && grep -q 'CAP_NET_RAW' "$T/refused.err" || fail "packet_capture as a user: status $RC"
        echo "SKIP: packet_capture needs root (AF_PACKET sockets need CAP_NET_RAW); as a user it says: $(head -n 1 "$T/refused.err")"
        exit 77
    fi
    need_netns packet_capture
    # A fresh namespace: lo carries nothing but what we send. It starts down:
    # packet_capture says so (ENETDOWN) and goes on once it is up.
    start_tool cap unshare -n "${RUN[@]}" "$BIN/packet_capture" -c 6 -w 20
    cap=$LAST_PID
    wait_for "$T/cap.out" '^capturing on packet:lo:0x0003(:00){6}$'
    ns_of "$cap"
    wait_for "$T/cap.err" '^packet_capture: lo is down, waiting$'
    in_ns ip link set lo up
    run_tool pair nsenter -t "$nspid" -n "${RUN[@]}" "$BIN/udp_echo" pair one two three
    [ "$RC" -eq 0 ] || fail "udp_echo pair in the namespace: status $RC"
    sport=$(sed -n 's/^server on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$T/pair.out")
    [ -n "$sport" ] || fail "no server port in pair.out"
    finish "$cap" 0 "packet_capture -c 6"
    grep -q '^packet_capture: 6 frames$' "$T/cap.err" || fail "no '6 frames' on stderr"
    sed -i 1d "$T/cap.out"
    [ "$(wc -l <"$T/cap.out")" -eq 6 ] || fail "not 6 frame lines"
    # 3 datagrams each way ("one", "two": 28 + 3 bytes; "three": 28 + 5), each seen once
    req="^0x0800 IPv4 127\.0\.0\.1:[0-9]+ > 127\.0\.0\.1:$sport udp"
    rep="^0x0800 IPv4 127\.0\.0\.1:$sport > 127\.0\.0\.1:[0-9]+ udp"
    in_order "$T/cap.out" "$req 31$" "$rep 31$" "$req 31$" "$rep 31$" "$req 33$" "$rep 33$"
    ok "packet_capture: the 6 UDP frames of udp_echo pair, one line each"
    # -w: nothing comes, the deadline ends the capture, status 0
    run_tool idle unshare -n "${RUN[@]}" "$BIN/packet_capture" -w 0.5
    [ "$RC" -eq 0 ] || fail "packet_capture -w 0.5: status $RC"
    grep -q '^packet_capture: 0 frames$' "$T/idle.err" || fail "no '0 frames' after -w"
    ok "packet_capture -w 0.5 on an idle lo: 0 frames, status 0"
    # SIGTERM while it waits: status 0
    start_tool forever unshare -n "${RUN[@]}" "$BIN/packet_capture" -c 0
    forever=$LAST_PID
    wait_for "$T/forever.out" '^capturing on '
    kill -TERM "$forever"
    finish "$forever" 0 "packet_capture after SIGTERM"
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

udp_bulk)
    # One-way bulk over 127.0.0.1 and ::1, each of send/recv with and
    # without its offload (--gso, --gro), and once with 100-byte datagrams:
    # the receiver checks every datagram that arrives (sequence, payload),
    # and the counts must agree: nothing bad or duplicated, what arrived plus
    # what was lost is what the sender sent. Losses themselves are allowed
    # (UDP has no flow control; under valgrind the receiver falls behind).
    hosts="127.0.0.1"
    if grep -q '^00000000000000000000000000000001 ' /proc/net/if_inet6 2>/dev/null; then
        hosts="$hosts ::1"
    else
        echo "(no ::1 on this machine: IPv4 only)"
    fi
    # field LINE KEY: the value of KEY=... in LINE
    field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
    for host in $hosts; do
        for spec in plain:plain gso:plain plain:gro gso:gro gso:gro:100; do
            IFS=: read -r smode rmode size <<<"$spec"
            sargs=(-d 0.2)
            rargs=(-d 20)
            [ "$smode" = gso ] && sargs+=(--gso)
            [ "$rmode" = gro ] && rargs+=(--gro)
            [ -n "$size" ] && sargs+=(-s "$size")
            what="udp_bulk send ${sargs[*]} -> recv ${rargs[*]} on $host"
            start recv udp_bulk recv "${rargs[@]}" 0 "$host"
            recv=$LAST_PID
            port_of "$T/recv.out"
            run send udp_bulk send "${sargs[@]}" "$host" "$port"
            [ "$RC" -eq 0 ] || fail "$what: sender status $RC"
            finish "$recv" 0 "$what: receiver"
            s=$(grep '^send ' "$T/send.out")
            r=$(grep '^recv ' "$T/recv.out")
            [ -n "$s" ] && [ -n "$r" ] || fail "$what: no result line"
            sent=$(field "$s" dgrams)
            got=$(field "$r" dgrams)
            lost=$(field "$r" lost)
            rsize=$(field "$r" size)
            [ "$(field "$r" end)" = yes ] || fail "$what: the end marker never arrived"
            [ "$(field "$r" sent)" = "$sent" ] || fail "$what: the end marker says $(field "$r" sent) sent, the sender $sent"
            [ "$(field "$r" bad)" = 0 ] && [ "$(field "$r" dup)" = 0 ] || fail "$what: bad or duplicated datagrams"
            [ "$got" -gt 0 ] && [ $((got + lost)) -eq "$sent" ] || fail "$what: $got arrived + $lost lost != $sent sent"
            [ "$rsize" = "${size:-1200}" ] && [ "$(field "$r" bytes)" -eq $((got * rsize)) ] ||
                fail "$what: sizes or bytes do not add up"
            if [ "$smode" = gso ]; then # (whatever the kernel offers: one call, many datagrams)
                [ "$(field "$s" calls)" -lt "$sent" ] || fail "$what: one call per datagram"
            else
                [ "$(field "$s" calls)" = "$sent" ] || fail "$what: calls != datagrams"
            fi
            ok "$what: $got of $sent checked, $lost lost, $(field "$r" receives) receives"
        done
    done
    run usage udp_bulk send --gro 127.0.0.1 9
    [ "$RC" -eq 2 ] || fail "udp_bulk send --gro: status $RC, expected 2 (usage)"
    ;;

dns_responder)
    # Queries built by hand in Python (RFC 1035; no resolver library of
    # ours), against the responder on its default dual-stack "::" and on
    # 0.0.0.0: records, errors, garbage, a burst, and the source of each
    # answer (IP_PKTINFO): asked on 127.0.0.2 it must answer from 127.0.0.2,
    # where the route alone would pick 127.0.0.1, the client's address.
    need python3
    cat >"$T/dns_client.py" <<'PY'
# dns_client.py CHECK HOST PORT [SOURCE]: queries built by hand (RFC 1035) against
# dns_responder started with --name www.example.test=192.0.2.7 and
# --name www.example.test=2001:db8::7. Prints "ok: ..." lines; exits 1 with
# the reason on the first failure.
import os, random, socket, struct, sys

check, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
WAIT = float(os.environ.get("DNS_WAIT", "5"))  # for one reply (valgrind is slow)
A, AAAA, MX, ANY, AXFR, IN, CH = 1, 28, 15, 255, 252, 1, 3
FAMILY = socket.AF_INET6 if ":" in host else socket.AF_INET
WANT = {("localhost", A): ["127.0.0.1"], ("localhost", AAAA): ["::1"],
        ("www.example.test", A): ["192.0.2.7"], ("www.example.test", AAAA): ["2001:db8::7"]}

def fail(why):
    sys.exit("FAIL: " + why)

def wire_name(name):
    return b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"

def query(qid, name, qtype, qclass=IN, flags=0x0100, counts=(1, 0, 0, 0), extra=b""):
    return (struct.pack("!6H", qid, flags, *counts) + wire_name(name)
            + struct.pack("!2H", qtype, qclass) + extra)

def parse(msg):
    """(id, flags, rcode, question bytes, [(type, address)]) of an answer"""
    if len(msg) < 12:
        fail("an answer of %d bytes" % len(msg))
    qid, flags, qd, an, ns, ar = struct.unpack("!6H", msg[:12])
    pos, question = 12, b""
    if qd:
        end = msg.index(b"\0", 12) + 5
        question, pos = msg[12:end], end
    answers = []
    for _ in range(an):
        ptr, rtype, rclass, ttl, rdlen = struct.unpack("!HHHIH", msg[pos:pos + 12])
        if ptr != 0xC00C or rclass != IN:
            fail("answer record with name 0x%x class %d" % (ptr, rclass))
        data = msg[pos + 12:pos + 12 + rdlen]
        fam = socket.AF_INET if rtype == A else socket.AF_INET6
        answers.append((rtype, socket.inet_ntop(fam, data)))
        pos += 12 + rdlen
    if pos != len(msg):
        fail("%d bytes after the answers" % (len(msg) - pos))
    return qid, flags, flags & 0xF, question, answers

def sock(connected=True):
    s = socket.socket(FAMILY, socket.SOCK_DGRAM)
    s.settimeout(WAIT)
    if len(sys.argv) > 4:  # the client's own address
        s.bind((sys.argv[4], 0))
    if connected:
        s.connect((host, port))
    return s

def ask(s, msg):
    s.send(msg)
    try:
        return s.recv(4096)
    except socket.timeout:
        fail("no answer to %r in %g s" % (msg[:40], WAIT))

def expect(s, qid, name, qtype, rcode, answers, what, qclass=IN, aa=True):
    msg = query(qid, name, qtype, qclass)
    got_id, flags, got_rcode, question, got = parse(ask(s, msg))
    if got_id != qid or not flags & 0x8000 or got_rcode != rcode:
        fail("%s: id %d flags 0x%04x, expected id %d rcode %d" % (what, got_id, flags, qid, rcode))
    if bool(flags & 0x0400) != aa or not flags & 0x0100:
        fail("%s: flags 0x%04x (AA %s, RD echoed expected)" % (what, flags, aa))
    if question != msg[12:]:
        fail("%s: the question came back changed" % what)
    if sorted(a for _, a in got) != sorted(answers):
        fail("%s: answers %s, expected %s" % (what, got, answers))
    print("ok: %s -> rcode %d %s" % (what, rcode, answers))

def expect_header_only(s, msg, rcode, what):
    got_id, flags, got_rcode, question, got = parse(ask(s, msg))
    if got_id != struct.unpack("!H", msg[:2])[0] or not flags & 0x8000 or got_rcode != rcode:
        fail("%s: id %d flags 0x%04x, expected rcode %d" % (what, got_id, flags, rcode))
    print("ok: %s -> rcode %d" % (what, rcode))

def expect_nothing(s, msg, what):
    # send it, then a good query: the first answer must be the good one's
    s.send(msg)
    expect(s, 4242, "localhost", A, 0, ["127.0.0.1"], what + ", then a good query")
    print("ok: %s -> no answer" % what)

if check == "records":
    s = sock()
    expect(s, 1, "localhost", A, 0, ["127.0.0.1"], "A localhost")
    expect(s, 2, "localhost", AAAA, 0, ["::1"], "AAAA localhost")
    expect(s, 3, "www.example.test", A, 0, ["192.0.2.7"], "A www.example.test")
    expect(s, 4, "www.example.test", AAAA, 0, ["2001:db8::7"], "AAAA www.example.test")
    expect(s, 5, "WwW.eXample.TEST", A, 0, ["192.0.2.7"], "A WwW.eXample.TEST (case kept)")
    expect(s, 6, "www.example.test", ANY, 0, ["192.0.2.7", "2001:db8::7"], "ANY www.example.test")
    expect(s, 7, "localhost", MX, 0, [], "MX localhost (a name without that type)")
    expect(s, 8, "nowhere.example.test", A, 3, [], "A nowhere.example.test (NXDOMAIN)")
    expect(s, 9, "example.test", AAAA, 3, [], "AAAA example.test (NXDOMAIN)")
    expect(s, 10, "localhost", A, 5, [], "A localhost class CH (REFUSED)", qclass=CH, aa=False)
    expect(s, 11, "localhost", AXFR, 4, [], "AXFR localhost over UDP (NOTIMP)", aa=False)

elif check == "garbage":
    s = sock()
    good = query(77, "localhost", A)
    expect_header_only(s, query(20, "localhost", A, counts=(2, 0, 0, 0)), 1, "two questions (FORMERR)")
    expect_header_only(s, query(21, "localhost", A, counts=(0, 0, 0, 0)), 1, "no question (FORMERR)")
    expect_header_only(s, good[:-3], 1, "the type and class cut (FORMERR)")
    expect_header_only(s, good[:16], 1, "the name cut (FORMERR)")
    expect_header_only(s, good + b"xx", 1, "bytes after the question (FORMERR)")
    expect_header_only(s, query(22, "localhost", A, counts=(1, 0, 0, 1),
                                extra=b"\0" + struct.pack("!HHIH", 41, 1232, 0, 0)),
                       1, "an EDNS OPT record (FORMERR, RFC 6891 section 7)")
    loop = struct.pack("!6H", 23, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack("!2H", A, IN)
    expect_header_only(s, loop, 1, "a compression pointer to itself (FORMERR)")
    long_name = struct.pack("!6H", 24, 0, 1, 0, 0, 0) + (b"\x3f" + b"a" * 63) * 5 + b"\0\0\1\0\1"
    expect_header_only(s, long_name, 1, "a name of 321 bytes (FORMERR)")
    expect_header_only(s, query(25, "localhost", A, flags=0x1000), 4, "opcode STATUS (NOTIMP)")
    expect_header_only(s, query(26, "localhost", A) + b"\0" * 600, 1, "a query of 627 bytes (FORMERR)")
    expect_nothing(s, b"\x12\x34\x00", "3 bytes")
    expect_nothing(s, b"", "an empty datagram")
    expect_nothing(s, query(27, "localhost", A, flags=0x8000), "a response (QR set)")
    rnd = random.Random(10)
    for i in range(300):  # random bytes: any answer is a proper one
        msg = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 80)))
        if rnd.randrange(2) and len(msg) >= 12:  # half of them with a plausible header
            msg = struct.pack("!6H", i, rnd.choice([0, 0x0100, 0x0800]), 1, 0, 0, 0) + msg[12:]
        s.send(msg)
    s.settimeout(0.5)
    answered = 0
    try:
        while True:
            got_id, flags, rcode, _, _ = parse(s.recv(4096))
            if not flags & 0x8000 or rcode not in (0, 1, 3, 4, 5):
                fail("random bytes: an answer with flags 0x%04x" % flags)
            answered += 1
    except socket.timeout:
        pass
    s.settimeout(WAIT)
    expect(s, 28, "localhost", AAAA, 0, ["::1"], "after 300 random datagrams (%d answered)" % answered)

elif check == "source":
    # connected to HOST: the kernel passes only datagrams from HOST:PORT
    expect(sock(), 30, "localhost", A, 0, ["127.0.0.1"], "connected to %s" % host)
    s = sock(connected=False)
    s.sendto(query(31, "localhost", AAAA), (host, port))
    try:
        msg, src = s.recvfrom(4096)
    except socket.timeout:
        fail("no answer from %s" % host)
    if src[:2] != (host, port) or parse(msg)[0] != 31:
        fail("the answer came from %s, not %s" % (src[:2], (host, port)))
    print("ok: recvfrom says the answer came from %s port %d" % src[:2])

elif check == "burst":
    # 200 queries from one socket, at most 64 unanswered at a time (the
    # server's receive buffer holds about 150 on lo: no kernel drops)
    s = sock()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    names = list(WANT)
    asked, sent, done = {}, 0, 0
    while done < 200:
        while sent < 200 and sent - done < 64:
            qid = 1000 + sent
            asked[qid] = names[sent % len(names)]
            s.send(query(qid, asked[qid][0], asked[qid][1]))
            sent += 1
        try:
            qid, flags, rcode, _, got = parse(s.recv(4096))
        except socket.timeout:
            fail("burst: %d of 200 answered, then nothing for %g s" % (done, WAIT))
        if qid not in asked or rcode != 0 or [a for _, a in got] != WANT[asked.pop(qid)]:
            fail("burst: a wrong or repeated answer (id %d, rcode %d, %s)" % (qid, rcode, got))
        done += 1
    print("ok: a burst of 200 queries, 200 right answers, ids matched")
else:
    fail("unknown check " + check)
PY
    NAMES=(--name www.example.test=192.0.2.7 --name www.example.test=2001:db8::7)
    v6=
    grep -q '^00000000000000000000000000000001 ' /proc/net/if_inet6 2>/dev/null && v6=yes
    for bind in "" 0.0.0.0; do
        start server dns_responder -p 0 "${NAMES[@]}" $bind
        server=$LAST_PID
        port_of "$T/server.out"
        what="dns_responder ${bind:-(default)} on $(sed -n 's/^listening on //p' "$T/server.out")"
        checks=("records 127.0.0.1" "garbage 127.0.0.1" "burst 127.0.0.1" "source 127.0.0.2")
        [ -z "$bind" ] && [ -n "$v6" ] && checks+=("records ::1" "source ::1" "burst ::1")
        for c in "${checks[@]}"; do
            read -r check host <<<"$c"
            run_tool client python3 "$T/dns_client.py" "$check" "$host" "$port"
            [ "$RC" -eq 0 ] || fail "$what: $check at $host: $(tail -n 1 "$T/client.err")"
            sed "s/^ok: /ok: $check at $host: /" "$T/client.out"
        done
        kill -TERM "$server"
        finish "$server" 0 "$what after SIGTERM"
        grep -Eq '^queries [0-9]+, answers [0-9]+, dropped [1-9][0-9]*$' "$T/server.out" ||
            fail "$what: no counts line (with the garbage dropped)"
        ok "$what: $(tail -n 1 "$T/server.out")"
    done
    [ -n "$v6" ] || echo "(no ::1 on this machine: IPv4 only)"

    # IPV6_PKTINFO where it matters: a second IPv6 address on lo, in a
    # namespace of our own (root only), the client on ::1 asking at it.
    if [ "$(id -u)" -eq 0 ] && [ -n "$v6" ] && command -v nsenter >/dev/null &&
        timeout 5 unshare -n true 2>/dev/null; then
        start_tool ns unshare -n sh -c 'ip link set lo up && ip addr add 2001:db8::53/128 dev lo nodad && exec "$@"' \
            sh "${RUN[@]}" "$BIN/dns_responder" -p 0 "${NAMES[@]}"
        server=$LAST_PID
        port_of "$T/ns.out"
        ns_of "$server"
        run_tool client nsenter -t "$nspid" -n python3 "$T/dns_client.py" source 2001:db8::53 "$port" ::1
        [ "$RC" -eq 0 ] || fail "asked at 2001:db8::53 from ::1: $(tail -n 1 "$T/client.err")"
        sed "s/^ok: /ok: in a namespace, from ::1: /" "$T/client.out"
        kill -TERM "$server"
        finish "$server" 0 "dns_responder in a namespace after SIGTERM"
    else
        echo "(the IPV6_PKTINFO check with a second address needs root and unshare -n: not run)"
    fi

    run usage dns_responder -p 70000
    [ "$RC" -eq 2 ] || fail "dns_responder -p 70000: status $RC, expected 2 (usage)"
    run bad_name dns_responder --name nowhere=not-an-address
    [ "$RC" -eq 2 ] && grep -q "not NAME=ADDR" "$T/bad_name.err" || fail "--name with a bad address: status $RC"
    ok "a bad port or --name: usage, status 2"
    ;;

tls_echo)
    need openssl python3
    gen_certs
    payload
    start server tls_echo_server 0 "$T/leaf.pem" "$T/leaf-key.pem" 127.0.0.1
    server=$LAST_PID
    port_of "$T/server.out"

    # openssl s_client, verifying the chain: 1 MiB through it and back.
    # (-no_ign_eof after -quiet: stop at the end of stdin; -nocommands: a
    # line of the payload that starts with R or Q is data, not a command.)
    # Its stdin stays open until everything came back: at the end of stdin
    # it closes at once, without reading what is still on its way.
    rm -f "$T/sc.fifo"
    mkfifo "$T/sc.fifo"
    STDIN=$T/sc.fifo start_tool s_client openssl s_client -connect "127.0.0.1:$port" \
        -CAfile "$T/ca.pem" -verify_return_error -quiet -no_ign_eof -nocommands
    client=$LAST_PID
    exec 3>"$T/sc.fifo"
    cat "$T/payload.bin" >&3
    wait_size "$T/s_client.out" 1048576
    exec 3>&-
    finish "$client" 0 "openssl s_client"
    cmp -s "$T/payload.bin" "$T/s_client.out" || fail "1 MiB through s_client came back changed"
    ok "1 MiB through openssl s_client came back intact"

    # Python's ssl module (verifies against ca.pem; closes without
    # close_notify, which the server takes as the client's end)
    cat >"$T/py_client.py" <<'PY'
import socket, ssl, sys
port, cafile, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
data = open(path, "rb").read()
ctx = ssl.create_default_context(cafile=cafile)
with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        got = bytearray()
        for i in range(0, len(data), 16384):  # ping-pong: no deadlock
            piece = data[i:i + 16384]
            s.sendall(piece)
            want = len(got) + len(piece)
            while len(got) < want:
                chunk = s.recv(65536)
                if not chunk:
                    sys.exit("EOF after %d bytes" % len(got))
                got += chunk
        print(s.version(), file=sys.stderr)
sys.stdout.buffer.write(got)
PY
    run_tool py python3 "$T/py_client.py" "$port" "$T/ca.pem" "$T/payload.bin"
    [ "$RC" -eq 0 ] || fail "the Python ssl client exited with $RC"
    cmp -s "$T/payload.bin" "$T/py.out" || fail "1 MiB through Python's ssl came back changed"
    ok "1 MiB through Python's ssl module came back intact ($(cat "$T/py.err"))"

    # a Trio SSLStream client: sends and receives at once, then aclose
    # (close_notify); TLS 1.2 too
    if python3 -c 'import trio' 2>/dev/null; then
        cat >"$T/trio_client.py" <<'PY'
import ssl, sys, trio
async def main(port, cafile, path, version):
    data = open(path, "rb").read()
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.maximum_version = version
    got = bytearray()
    with trio.fail_after(20):
        s = await trio.open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=ctx)
        async def receiver():
            while len(got) < len(data):
                chunk = await s.receive_some(65536)
                if not chunk:
                    sys.exit("EOF after %d bytes" % len(got))
                got.extend(chunk)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiver)
            await s.send_all(data)
        print(s.version(), file=sys.stderr)
        await s.aclose()
    sys.stdout.buffer.write(got)
trio.run(main, int(sys.argv[1]), sys.argv[2], sys.argv[3],
         getattr(ssl.TLSVersion, sys.argv[4]))
PY
        for v in TLSv1_2 TLSv1_3; do
            run_tool trio python3 "$T/trio_client.py" "$port" "$T/ca.pem" "$T/payload.bin" "$v"
            [ "$RC" -eq 0 ] || fail "the Trio client ($v) exited with $RC"
            cmp -s "$T/payload.bin" "$T/trio.out" || fail "1 MiB through Trio ($v) came back changed"
            ok "1 MiB through a Trio SSLStream came back intact ($(cat "$T/trio.err"))"
        done
    else
        echo "(no Trio: python3-trio is not installed, its client skipped)"
    fi

    # Clients whose handshake fails: one line each, and the server goes on.
    STDIN=/dev/null run_tool untrusting openssl s_client -connect "127.0.0.1:$port" \
        -CAfile "$T/other.pem" -verify_return_error -quiet -no_ign_eof
    [ "$RC" -ne 0 ] || fail "s_client trusting another CA connected"
    wait_for "$T/server.err" 'handshake with 127\.0\.0\.1:[0-9]+ failed: .*unknown ca$'
    printf 'hello in clear text\n' >"$T/plain.txt"
    STDIN=$T/plain.txt run_tool plain python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
s.sendall(sys.stdin.buffer.read())
while s.recv(4096): pass' "$port"
    wait_for "$T/server.err" 'handshake with 127\.0\.0\.1:[0-9]+ failed: .*wrong version number$'
    ok "failed handshakes logged: $(grep -c 'handshake with' "$T/server.err") lines"
    # A client stalled in its handshake (a record header promising 512
    # bytes that never come) stops no one, nor the SIGTERM.
    exec 4<>"/dev/tcp/127.0.0.1/$port" || fail "cannot connect with bash"
    printf '\x16\x03\x01\x02\x00' >&4
    printf 'still here\n' >"$T/after.txt"
    STDIN=$T/after.txt run_tool after python3 "$T/py_client.py" "$port" "$T/ca.pem" "$T/after.txt"
    [ "$RC" -eq 0 ] || fail "a client after the failed ones, beside a stalled one: status $RC"
    expect_output after $'still here\n'

    kill -TERM "$server"
    finish "$server" 0 "tls_echo_server after SIGTERM (a handshake stalled)"
    exec 4>&-
    [ "$(grep -c 'handshake with' "$T/server.err")" -eq 2 ] || fail "the cancelled handshake was logged"
    ;;

https_get)
    need openssl python3
    gen_certs
    mkdir "$T/www"
    head -c 300000 /dev/urandom >"$T/www/file.bin"

    # openssl s_server -WWW: an HTTP/1.0 answer with no length, and a close
    # without close_notify (the body ends at the close)
    CWD=$T/www start_tool s_server openssl s_server -accept 127.0.0.1:0 \
        -cert "$T/leaf.pem" -key "$T/leaf-key.pem" -WWW
    s_server_port "$T/s_server.out"
    run got https_get --cafile "$T/ca.pem" "https://127.0.0.1:$port/file.bin"
    [ "$RC" -eq 0 ] || fail "https_get from s_server -WWW: status $RC"
    cmp -s "$T/www/file.bin" "$T/got.out" || fail "the body from s_server -WWW differs"
    ok "https_get: 300000 bytes from openssl s_server -WWW, exactly"
    # the system store alone does not know our CA
    run untrusted https_get "https://localhost:$port/file.bin"
    [ "$RC" -ne 0 ] || fail "https_get without --cafile trusted a private CA"
    grep -q 'CTRIO_ETLS_VERIFY.*unable to get local issuer certificate' "$T/untrusted.err" ||
        fail "no verification failure in: $(cat "$T/untrusted.err")"
    ok "without --cafile: $(cat "$T/untrusted.err")"

    # a certificate for another name, and one from a CA nobody trusts
    CWD=$T/www start_tool wrong_server openssl s_server -accept 127.0.0.1:0 \
        -cert "$T/wrong.pem" -key "$T/wrong-key.pem" -WWW
    s_server_port "$T/wrong_server.out"
    run mismatch https_get --cafile "$T/ca.pem" "https://localhost:$port/file.bin"
    [ "$RC" -ne 0 ] || fail "https_get accepted a certificate for wrong.example"
    grep -q 'hostname mismatch' "$T/mismatch.err" || fail "no 'hostname mismatch' message"
    [ ! -s "$T/mismatch.out" ] || fail "https_get printed a body from the wrong server"
    ok "hostname mismatch: $(cat "$T/mismatch.err")"
    # and the server learns why from https_get's alert, as from any
    # OpenSSL client (Trio's SSLStream sends none: the server sees an EOF)
    wait_for "$T/wrong_server.err" 'alert bad certificate' ||
        fail "s_server got no alert from https_get: $(cat "$T/wrong_server.err")"
    ok "s_server heard why: bad certificate"
    CWD=$T/www start_tool stranger_server openssl s_server -accept 127.0.0.1:0 \
        -cert "$T/stranger.pem" -key "$T/stranger-key.pem" -WWW
    s_server_port "$T/stranger_server.out"
    run stranger https_get --cafile "$T/ca.pem" "https://localhost:$port/file.bin"
    [ "$RC" -ne 0 ] || fail "https_get accepted a certificate from an untrusted CA"
    grep -q 'CTRIO_ETLS_VERIFY' "$T/stranger.err" || fail "no verification failure message"
    ok "untrusted CA: $(cat "$T/stranger.err")"
    wait_for "$T/stranger_server.err" 'alert unknown ca' ||
        fail "s_server got no alert from https_get: $(cat "$T/stranger_server.err")"
    ok "s_server heard why: unknown ca"

    # Python's http.server over ssl: HTTP/1.1 with Content-Length, chunked
    # (extensions, a trailer, a chunk split across records) and a 404
    cat >"$T/py_server.py" <<'PY'
import http.server, ssl, sys
body = open(sys.argv[3], "rb").read()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/length":
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 20000):
                piece = body[i:i + 20000]
                self.wfile.write(b"%X;name=value\r\n" % len(piece) + piece + b"\r\n")
            self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        else:
            self.send_error(404)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("listening on 127.0.0.1:%d" % server.server_port, flush=True)
server.serve_forever()
PY
    start_tool py_server python3 "$T/py_server.py" "$T/leaf.pem" "$T/leaf-key.pem" "$T/www/file.bin"
    port_of "$T/py_server.out"
    for path in length chunked; do
        run "$path" https_get --alpn --cafile "$T/ca.pem" "https://localhost:$port/$path"
        [ "$RC" -eq 0 ] || fail "https_get /$path from Python: status $RC"
        cmp -s "$T/www/file.bin" "$T/$path.out" || fail "the /$path body from Python differs"
        ok "https_get: 300000 bytes from Python's http.server, /$path, exactly"
    done
    run verbose https_get -v --cafile "$T/ca.pem" "https://localhost:$port/chunked"
    grep -q '^< Transfer-Encoding: chunked' "$T/verbose.err" || fail "-v printed no headers"
    run missing https_get --cafile "$T/ca.pem" "https://localhost:$port/missing"
    [ "$RC" -eq 1 ] || fail "https_get of a 404: status $RC, expected 1"
    grep -q 'status 404' "$T/missing.err" || fail "no 'status 404' message"
    ok "a 404: $(cat "$T/missing.err")"
    run bad_url https_get http://localhost/
    [ "$RC" -eq 2 ] || fail "https_get http://...: status $RC, expected 2"
    ;;

curl)
    # curl against a ctrio HTTPS server, and https_get against it too
    need openssl curl
    gen_certs
    start server https_hello 0 "$T/leaf.pem" "$T/leaf-key.pem" 127.0.0.1
    server=$LAST_PID
    port_of "$T/server.out"
    run_tool curl curl -sS -v --max-time 20 --cacert "$T/ca.pem" "https://localhost:$port/from/curl"
    [ "$RC" -eq 0 ] || fail "curl: status $RC"
    expect_output curl $'hello from ctrio: /from/curl\n'
    grep -q 'ALPN.*accepted http/1.1' "$T/curl.err" || fail "curl: no ALPN http/1.1"
    run_tool curl_ip curl -sS --max-time 20 --cacert "$T/ca.pem" "https://127.0.0.1:$port/by/address"
    [ "$RC" -eq 0 ] || fail "curl by address: status $RC"
    expect_output curl_ip $'hello from ctrio: /by/address\n'
    run_tool curl_ca curl -sS --max-time 20 --cacert "$T/other.pem" "https://localhost:$port/"
    [ "$RC" -ne 0 ] || fail "curl trusted a certificate from another CA"
    ok "curl with the wrong CA fails: status $RC"
    run get https_get --alpn --cafile "$T/ca.pem" "https://localhost:$port/from/https_get"
    [ "$RC" -eq 0 ] || fail "https_get from https_hello: status $RC"
    expect_output get $'hello from ctrio: /from/https_get\n'
    kill -TERM "$server"
    finish "$server" 0 "https_hello after SIGTERM"
    ;;

nc_tls)
    need openssl
    gen_certs
    # nc --tls (client) vs openssl s_server: a line each way; -w ends nc
    # once both are there (TLS cannot half-close, and s_server would close
    # without close_notify), and its close_notify ends s_server. -w also
    # bounds connecting and the handshake, which take seconds under
    # valgrind (loading the system's CAs): 10 s there, 2 s otherwise.
    w=2
    [ ${#RUN[@]} -eq 0 ] || w=10
    rm -f "$T/ss.fifo"
    mkfifo "$T/ss.fifo"
    STDIN=$T/ss.fifo start_tool s_server openssl s_server -accept 127.0.0.1:0 \
        -cert "$T/leaf.pem" -key "$T/leaf-key.pem" -naccept 1
    s_server=$LAST_PID
    exec 3>"$T/ss.fifo"
    s_server_port "$T/s_server.out"
    printf 'from the nc client\n' >"$T/c.in"
    STDIN=$T/c.in start client nc --tls --cafile "$T/ca.pem" -w "$w" localhost "$port"
    client=$LAST_PID
    wait_for "$T/s_server.out" '^from the nc client$'
    echo "from s_server" >&3
    finish "$client" 0 "nc --tls client (ended by -w $w)"
    expect_output client $'from s_server\n'
    finish "$s_server" 0 "openssl s_server (ended by nc's close_notify)"
    exec 3>&-
    ok "nc --tls <-> openssl s_server: both directions"

    # nc -l --tls vs openssl s_client: a line each way; the end of
    # s_client's stdin sends close_notify, which ends nc
    printf 'from the nc listener\n' >"$T/l.in"
    STDIN=$T/l.in start listener nc -l --tls --cert "$T/leaf.pem" --key "$T/leaf-key.pem" 127.0.0.1 0
    listener=$LAST_PID
    port_of "$T/listener.err"
    rm -f "$T/sc.fifo"
    mkfifo "$T/sc.fifo"
    STDIN=$T/sc.fifo start_tool s_client openssl s_client -connect "127.0.0.1:$port" \
        -CAfile "$T/ca.pem" -verify_return_error -quiet -no_ign_eof
    s_client=$LAST_PID
    exec 4>"$T/sc.fifo"
    wait_for "$T/s_client.out" '^from the nc listener$'
    echo "from s_client" >&4
    wait_for "$T/listener.out" '^from s_client$'
    exec 4>&-
    finish "$s_client" 0 "openssl s_client"
    finish "$listener" 0 "nc -l --tls (ended by close_notify)"
    expect_output listener $'from s_client\n'
    expect_output s_client $'from the nc listener\n'
    ok "nc -l --tls <-> openssl s_client: both directions"

    # a server whose certificate names someone else: nc says why, status 1
    STDIN=$T/ss.fifo start_tool wrong openssl s_server -accept 127.0.0.1:0 \
        -cert "$T/wrong.pem" -key "$T/wrong-key.pem" -naccept 1
    exec 3>"$T/ss.fifo"
    s_server_port "$T/wrong.out"
    # (no -w: the handshake fails at once, however long valgrind takes to
    # get there; run's own timeout bounds it)
    run mismatch nc --tls --cafile "$T/ca.pem" localhost "$port"
    exec 3>&-
    [ "$RC" -eq 1 ] || fail "nc --tls to a wrong.example certificate: status $RC, expected 1"
    grep -q 'hostname mismatch' "$T/mismatch.err" || fail "no 'hostname mismatch' message"
    ok "nc --tls refuses a certificate for another name: $(head -n 1 "$T/mismatch.err")"
    run no_key nc -l --tls 127.0.0.1 0
    [ "$RC" -eq 2 ] || fail "nc -l --tls without --cert/--key: status $RC, expected 2"
    ;;

*)
    fail "unknown scenario '$SCENARIO'"
    ;;
esac

check_no_sanitizer_reports
echo "PASS [$SCENARIO]"
exit 0
