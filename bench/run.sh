#!/usr/bin/env bash
# Runs every benchmark of bench/ and prints their tables (make bench).
set -euo pipefail
build=${CTRIO_BUILD_DIR:-build}
"$build/bench/bench_core"
echo
echo "ctrio socket benchmarks"
"$build/bench/bench_socket" pingpong 200000
if command -v strace >/dev/null 2>&1; then
    n=50000
    log=$(mktemp)
    strace -f -c -o "$log" "$build/bench/bench_socket" ctrio-only "$n" >/dev/null
    # strace -c: "% time seconds usecs/call calls errors syscall"; the total line ends in "total"
    awk -v n="$n" '
        $NF == "total" { total = $4 }   # (the errors column may be empty)
        $NF == "epoll_ctl" { ctl = $4 }
        $NF == "sendto" || $NF == "recvfrom" || $NF == "epoll_wait" { io[$NF] = $4 }
        END {
            printf "system calls per round trip (strace -c, %d RTT): %.2f total", n, total / n
            for (k in io) printf ", %s %.2f", k, io[k] / n
            printf "; epoll_ctl in the whole run: %d\n", ctl + 0
        }' "$log"
    rm -f "$log"
fi

echo
echo "echo servers (bench/echo_bench.sh)"
CTRIO_BUILD_DIR="$build" bash "$(dirname "$0")/echo_bench.sh"

echo
echo "TLS echo servers (bench/tls_bench.sh)"
CTRIO_BUILD_DIR="$build" bash "$(dirname "$0")/tls_bench.sh"

echo
echo "UDP echo servers (bench/udp_bench.sh)"
CTRIO_BUILD_DIR="$build" bash "$(dirname "$0")/udp_bench.sh"

echo
echo "UDP bulk offload (bench/udp_offload_bench.sh)"
CTRIO_BUILD_DIR="$build" bash "$(dirname "$0")/udp_offload_bench.sh"

echo
echo "channels between runs (bench/xchan_bench.sh)"
CTRIO_BUILD_DIR="$build" bash "$(dirname "$0")/xchan_bench.sh"

echo
echo "all cores: echo_server --runs 1 against --runs 2 (bench/runs_bench.sh)"
CTRIO_BUILD_DIR="$build" bash "$(dirname "$0")/runs_bench.sh"
