# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # globals shared with the sourcing script
# The common code of the benchmark scripts of bench/ (echo_bench.sh,
# tls_bench.sh, udp_bench.sh, runs_bench.sh, udp_offload_bench.sh,
# xchan_bench.sh), sourced by each:
#   . "$(dirname "$0")/lib.sh"
# What is here is what they all do alike: start servers that print
# "listening on HOST:PORT" and stop them with SIGTERM, pin, read the load
# average and a process's CPU time, take turns round by round, count system
# calls with perf after a warm-up, build the Go peers offline, and the awk
# functions of their tables (medians, paired ratios). What tells one
# benchmark from another (its servers, load generator, tables and goals)
# stays in its script.
#
# The script sets, before calling bench_setup:
#   bench_name   the name its messages start with ("echo benchmark")
#   bench_keep   non-empty: keep the temporary directory at exit
# bench_setup sets the globals the functions share:
#   tmp          the temporary directory (removed at exit)
#   pid, port    associative arrays: server -> pid, server -> TCP/UDP port
#   running      the servers started, in the order started
#   status       the exit status, 1 once a server failed
#   results      $tmp/results, the load generator's "result ..." lines

bench_setup() {
    tmp=$(mktemp -d)
    declare -gA pid port
    running=()
    status=0
    results=$tmp/results
    : >"$results"
    trap bench_cleanup EXIT
}

# at exit: no server outlives the script
# shellcheck disable=SC2317 # the EXIT trap
bench_cleanup() {
    local s
    for s in "${!pid[@]}"; do
        if kill -0 "${pid[$s]}" 2>/dev/null; then
            kill -KILL "${pid[$s]}" 2>/dev/null || true
        fi
    done
    if [ -n "${bench_keep:-}" ]; then
        echo "kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}

# wait_for FILE REGEX TENTHS: until a line of FILE matches (bounded)
wait_for() {
    local i
    for ((i = 0; i < $3 * 2; i++)); do
        if grep -qE "$2" "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# bench_pin [TEXT]: the server on CPU 1, the load generator on CPU 0, no
# pinning on a 1-CPU machine; sets pin_srv, pin_lg (command prefixes) and
# pinning (said in the title: TEXT when pinned, if given)
# shellcheck disable=SC2120 # TEXT is optional
bench_pin() {
    if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
        pin_srv=(taskset -c 1)
        pin_lg=(taskset -c 0)
        pinning=${1:-"server on CPU 1, loadgen on CPU 0"}
    else
        pin_srv=()
        pin_lg=()
        pinning="not pinned (fewer than 2 CPUs or no taskset)"
    fi
}

# bench_loadavg WHEN: "load average WHEN: 1 5 15"; a burst of load from
# elsewhere on this shared machine shows here
bench_loadavg() {
    echo "load average $1: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# bench_tw_reuse: sets lg_opts to -R (close with a reset) when loopback
# ports are not reused from TIME_WAIT: churn and handshake workloads leave
# their client ports there, and would run out of them
bench_tw_reuse() {
    lg_opts=()
    if [ "$(cat /proc/sys/net/ipv4/tcp_tw_reuse 2>/dev/null || echo 0)" = 0 ]; then
        lg_opts=(-R)
    fi
}

# CPU time of a process so far, ns, all its threads (schedstat: run time first)
cpu_ns() {
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ t += $1 } END { printf "%.0f\n", t }'
}

# CPU time of a process so far, clock ticks: utime + stime of all its
# threads (fields 14 and 15 of /proc/PID/stat, counted after the ")" that
# ends the command name, which may hold spaces)
cpu_ticks() {
    sed 's/.*) //' /proc/"$1"/stat 2>/dev/null | awk '{ print $12 + $13 }'
}

# bench_go_build NAME: builds the Go peer bench/NAME/ into $build/bench/NAME.
# Standard library only, so `go build` needs no network; its caches stay in
# the build directory. Without a Go toolchain, or when the build fails, the
# binary is removed (a stale one would not match the source) and the status
# is 1.
bench_go_build() {
    local name=$1 here gobuild
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    gobuild=$(cd "$build" && pwd)/bench
    if ! command -v go >/dev/null 2>&1; then
        echo "(go: no Go toolchain; scripts/deps.sh --bench installs golang-go)"
        rm -f "$gobuild/$name"
        return 1
    fi
    if ! (cd "$here/$name" && GOCACHE=$gobuild/go-cache GOPATH=$gobuild/go-path \
        GOPROXY=off GOFLAGS=-buildvcs=false go build -o "$gobuild/$name" .); then
        echo "$bench_name: go build of bench/$name failed" >&2
        rm -f "$gobuild/$name"
        return 1
    fi
}

# bench_start SERVER COMMAND...: starts COMMAND (which prints "listening on
# HOST:PORT" first) in the background, output in $tmp/SERVER.out and .err;
# sets pid[SERVER] and port[SERVER] and appends SERVER to running. A server
# that exits 77 at start (raw_uring_echo where io_uring is refused: seccomp,
# io_uring_disabled) is left out, and said so; one that does not listen
# within 5 s is an error (status 1).
bench_start() {
    local s=$1 rc=0
    shift
    rm -f "$tmp/$s.out"
    # (a simple command in the background: taskset and env exec the server,
    # so $! is the server's own pid, the one whose CPU time and calls count)
    "$@" >"$tmp/$s.out" 2>"$tmp/$s.err" &
    pid[$s]=$!
    if wait_for "$tmp/$s.out" '^listening on ' 50; then
        port[$s]=$(sed -n '1s/.*:\([0-9][0-9]*\)$/\1/p' "$tmp/$s.out")
        running+=("$s")
        return 0
    fi
    kill -KILL "${pid[$s]}" 2>/dev/null || true
    wait "${pid[$s]}" 2>/dev/null || rc=$?
    unset "pid[$s]"
    if [ "$rc" -eq 77 ]; then
        echo "($s: $(head -1 "$tmp/$s.err"); left out)"
        return 0
    fi
    echo "$bench_name: $s did not print 'listening on' within 5 s" >&2
    cat "$tmp/$s.err" >&2
    status=1
    return 1
}

# bench_stop SERVER...: SIGTERM, and each must exit 0 within 5 s (status 1
# otherwise, and killed)
bench_stop() {
    local s i rc
    for s in "$@"; do
        kill -TERM "${pid[$s]}" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "${pid[$s]}" 2>/dev/null || break
            sleep 0.05
        done
        if kill -0 "${pid[$s]}" 2>/dev/null; then
            echo "$bench_name: $s still running 5 s after SIGTERM; killed" >&2
            kill -KILL "${pid[$s]}" 2>/dev/null || true
            status=1
        fi
        rc=0
        wait "${pid[$s]}" 2>/dev/null || rc=$?
        if [ "$rc" -ne 0 ]; then
            echo "$bench_name: $s exited with status $rc on SIGTERM (want 0)" >&2
            status=1
        fi
        unset "pid[$s]"
    done
}

# bench_rounds FUNC: FUNC SERVER WORKLOAD ROUND for each of $rounds rounds,
# each workload of $workloads and each running server. The order of the
# servers turns by one each round: each takes every place in turn, so none
# always runs first, after the previous workload, and a burst of load from
# elsewhere hurts them alike.
bench_rounds() {
    local r w j n=${#running[@]}
    for ((r = 1; r <= rounds; r++)); do
        for w in $workloads; do
            for ((j = 0; j < n; j++)); do
                "$1" "${running[$(((j + r - 1) % n))]}" "$w" "$r"
            done
        done
    done
}

# bench_load SERVER WORKLOAD ROUND CLOCK COMMAND...: runs the load generator
# COMMAND and appends its "result ..." line to $results with the server's
# CPU time meanwhile: " cpu_ns=N" (CLOCK ns: schedstat, run time) or
# " cpu_us=N" (CLOCK us: utime + stime, counted in clock ticks, so in steps
# of 10 ms at 100 Hz). A failed run is said, and sets status 1.
bench_load() {
    local s=$1 w=$2 r=$3 clock=$4 c0 c1 line cpu
    shift 4
    c0=$(bench_cpu "$clock" "${pid[$s]}")
    line=$("$@" 2>"$tmp/lg.err") || {
        echo "$bench_name: $s failed $w (round $r): $(tr '\n' ' ' <"$tmp/lg.err")" >&2
        status=1
    }
    c1=$(bench_cpu "$clock" "${pid[$s]}")
    if [ "$clock" = ns ]; then
        cpu="cpu_ns=$((c1 - c0))"
    else
        cpu="cpu_us=$(((c1 - c0) * 1000000 / $(getconf CLK_TCK)))"
    fi
    if [ -n "$line" ]; then
        echo "$line $cpu" >>"$results"
    fi
}

# bench_cpu CLOCK PID: cpu_ns (CLOCK ns) or cpu_ticks
bench_cpu() {
    if [ "$1" = ns ]; then cpu_ns "$2"; else cpu_ticks "$2"; fi
}

# bench_tracer CHOSEN EVENTS [strace]: the tracer that counts system calls:
# CHOSEN when set (the script's *_TRACER), else perf when `perf stat -e
# EVENTS` works here, else strace when allowed and installed, else none
bench_tracer() {
    if [ -n "$1" ]; then
        echo "$1"
    elif command -v perf >/dev/null 2>&1 &&
        perf stat -x, -e "$2" -o /dev/null -- true >/dev/null 2>&1; then
        echo perf
    elif [ "${3:-}" = strace ] && command -v strace >/dev/null 2>&1; then
        echo strace
    else
        echo none
    fi
}

# bench_events FIRST SYSCALL...: perf's event list: FIRST (every system
# call, and what else the script counts) and the entry tracepoint of each
# SYSCALL
bench_events() {
    local ev=$1 c
    shift
    for c in "$@"; do
        ev=$ev,syscalls:sys_enter_$c
    done
    echo "$ev"
}

# bench_trace_start PIDS EVENTS: attaches $tracer (perf stat of EVENTS, or
# strace -c) to the processes PIDS (comma-separated), log in $tmp/trace.log,
# and returns once it counts; bench_trace_stop ends it and flushes the log.
bench_trace_start() {
    rm -f "$tmp/trace.log"
    if [ "$tracer" = perf ]; then
        perf stat -x, -e "$2" -p "$1" -o "$tmp/trace.log" >/dev/null 2>&1 &
        trace_pid=$!
        sleep 0.3
    else
        strace -f -c -o "$tmp/trace.log" -p "$1" 2>"$tmp/strace.err" &
        trace_pid=$!
        wait_for "$tmp/strace.err" 'attached' 100 || true
        sleep 0.2
    fi
}
bench_trace_stop() {
    kill -INT "$trace_pid" 2>/dev/null || true
    wait "$trace_pid" 2>/dev/null || true
}

# bench_count SERVER EVENTS TENTHS COMMAND...: the system calls of SERVER
# while the load generator COMMAND (given "-g $tmp/go": it connects, warms
# up, prints "ready" and waits for that file) runs its counted operations,
# waited for at most TENTHS tenths of a second; the log in $tmp/trace.log,
# the load generator's output in $tmp/count.out and .err. Status 1 if it
# did not get ready or failed.
bench_count() {
    local s=$1 ev=$2 tenths=$3 lgpid lrc=0 out=$tmp/count.out
    shift 3
    # (removed first: the redirection truncates in the child, asynchronously,
    # and a stale "ready" would start the count during the warm-up)
    rm -f "$tmp/go" "$out"
    "$@" >"$out" 2>"$tmp/count.err" &
    lgpid=$!
    if ! wait_for "$out" '^ready' 100; then
        kill -TERM "$lgpid" 2>/dev/null || true
        wait "$lgpid" 2>/dev/null || true
        return 1
    fi
    bench_trace_start "${pid[$s]}" "$ev"
    touch "$tmp/go"
    wait_for "$out" '^result' "$tenths" || true
    bench_trace_stop
    rm -f "$tmp/go"
    wait "$lgpid" || lrc=$?
    [ "$lrc" -eq 0 ]
}

# The awk functions the tables share, put before a program:
#   awk -v ... "$bench_awk"'program'
# parse(): the fields NAME=VALUE of a "result ..." line into f[NAME].
# median(arr, n): of arr[1..n] (sorts it).
# pmed(w, a, b) and pmedv(w, a, b, v, hi): the median over the rounds of
#   the ratio of servers a and b on workload w, of their rates (pmed) or of
#   the metric v[w, server, round] (pmedv: a is ahead when higher if hi,
#   when lower if not), over the rounds in which both ran clean (a rate
#   above 0); from the globals rate[w, server, k] and cnt[w, server] (the
#   rounds); sets PM (the median) and PA (the rounds a was ahead), returns
#   their count.
# busymed(w): the median of busy[w, 1..nb[w]] (the load generator's CPU
#   share), "%.2f", or "-".
# syscount(): on each line of perf stat's -x, output, the count of each
#   system call into sc[NAME] (sc[""]: all of them, raw_syscalls).
# calls(names): the sum of sc[name] over the space-separated names.
# shellcheck disable=SC2016 # awk's $, not the shell's
bench_awk='
    function parse(   i, kv) {
        delete f
        for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    }
    function median(arr, n,   i, j, t) {
        for (i = 2; i <= n; i++)
            for (j = i; j > 1 && arr[j - 1] > arr[j]; j--) { t = arr[j]; arr[j] = arr[j - 1]; arr[j - 1] = t }
        return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
    }
    function pmedv(w, a, b, v, hi,   n, k, m, x, y, arr) {
        n = cnt[w, a] < cnt[w, b] ? cnt[w, a] : cnt[w, b]; m = 0; PA = 0
        for (k = 1; k <= n; k++) {
            if (!(rate[w, a, k] > 0 && rate[w, b, k] > 0)) continue
            x = v[w, a, k]; y = v[w, b, k]
            if (!(x > 0) || !(y > 0)) continue
            arr[++m] = x / y; PA += hi ? x >= y : x <= y
        }
        PM = m ? median(arr, m) : 0
        return m
    }
    function pmed(w, a, b) { return pmedv(w, a, b, rate, 1) }
    function busymed(w,   k, arr) {
        for (k = 1; k <= nb[w]; k++) arr[k] = busy[w, k]
        return nb[w] ? sprintf("%.2f", median(arr, nb[w])) : "-"
    }
    function syscount(   name) {
        if ($3 ~ /sys_enter/) { name = $3; sub(/.*sys_enter_?/, "", name); sc[name] = $1 + 0 }
    }
    function calls(names,   k, n, N, t) {
        n = split(names, N, " "); t = 0
        for (k = 1; k <= n; k++) t += sc[N[k]]
        return t
    }
'
