#!/usr/bin/env bash
# The cross-run channel benchmark (issue #12), run by bench/run.sh (make bench).
#
# Messages per second through a channel between two threads, one sending the
# integers 0..N-1, the other receiving and checking them (bench/xchan_bench.c):
#   ctrio    a shared channel between two runs, each on its own thread,
#            pinned to CPUs 0 and 1
#   pthread  a bounded ring under a pthread mutex + two condvars, the threads
#            pinned the same way (no capacity 0: it has no rendezvous)
#   go       a Go channel between two goroutines locked to their threads,
#            GOMAXPROCS=2 (bench/xchan_go, built here offline with `go build`)
# Workloads by capacity: 0 (rendezvous), 1 and 128. Rounds are paired: in
# each, every peer runs each workload once, their order turning by one each
# round; the table gives the best rate of the rounds, the CPU time (user +
# system, both threads) per message of that run, and the medians of the
# per-round ratios. This VM is noisy (2 CPUs shared): read the paired medians.
#
# Environment: CTRIO_BUILD_DIR (default build), XCHAN_BENCH_ROUNDS (3),
# XCHAN_BENCH_CAPS ("0 1 128"), XCHAN_BENCH_PEERS ("ctrio pthread go"),
# XCHAN_BENCH_SCALE (1: 200000 messages at capacity 0 and 1, 2000000 at 128).
# Exit status 1 if a peer failed (a message lost, duplicated or reordered).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
bench_name="channel benchmark"

build=${CTRIO_BUILD_DIR:-build}
rounds=${XCHAN_BENCH_ROUNDS:-3}
caps=${XCHAN_BENCH_CAPS:-0 1 128}
peers=${XCHAN_BENCH_PEERS:-ctrio pthread go}
scale=${XCHAN_BENCH_SCALE:-1}
bin=$build/bench/xchan_bench
status=0

if [ ! -x "$bin" ]; then
    echo "channel benchmark: $bin not built; skipped"
    exit 0
fi

gobin=""
if [[ " $peers " == *" go "* ]] && bench_go_build xchan_go; then
    gobin=$(cd "$build" && pwd)/bench/xchan_go
fi

messages() { # capacity -> N
    if [ "$1" -ge 128 ]; then echo $((2000000 * scale)); else echo $((200000 * scale)); fi
}

# one run: prints "PEER CAP N SECONDS RATE CPU" or nothing if left out
run_peer() {
    local p=$1 c=$2 n
    n=$(messages "$c")
    case $p in
    ctrio) "$bin" ctrio "$c" "$n" ;;
    pthread) [ "$c" -gt 0 ] && "$bin" pthread "$c" "$n" ;;
    go) [ -n "$gobin" ] && GOMAXPROCS=2 "$gobin" "$c" "$n" ;;
    esac
}

read -r -a plist <<<"$peers"
np=${#plist[@]}
results=$(mktemp)
trap 'rm -f "$results"' EXIT
echo "channel between two threads: best of $rounds paired rounds"
bench_loadavg before
for ((r = 0; r < rounds; r++)); do
    for c in $caps; do
        for ((i = 0; i < np; i++)); do
            p=${plist[$(((i + r) % np))]}
            if ! out=$(run_peer "$p" "$c"); then
                [ "$p" = pthread ] && [ "$c" -eq 0 ] && continue
                [ "$p" = go ] && [ -z "$gobin" ] && continue
                echo "channel benchmark: $p failed at capacity $c" >&2
                status=1
                continue
            fi
            [ -n "$out" ] && echo "$r $out" >>"$results"
        done
    done
done

# results: ROUND PEER CAP N SECONDS RATE CPU
awk -v caps="$caps" -v peers="$peers" "$bench_awk"'
    {
        rate[$1, $2, $3] = $6
        if ($6 > best[$2, $3]) { best[$2, $3] = $6; cpu[$2, $3] = $7 / $4 * 1e9 }
        if ($1 + 1 > nr) nr = $1 + 1
    }
    END {
        nc = split(caps, C, " "); npe = split(peers, P, " ")
        printf "%-9s %-8s %14s %14s\n", "capacity", "peer", "msgs/s (best)", "CPU ns/msg"
        for (i = 1; i <= nc; i++)
            for (j = 1; j <= npe; j++)
                if (best[P[j], C[i]] > 0)
                    printf "%-9s %-8s %14.0f %14.0f\n", C[i], P[j], best[P[j], C[i]], cpu[P[j], C[i]]
        for (i = 1; i <= nc; i++)
            for (j = 1; j <= npe; j++) {
                if (P[j] == "ctrio") continue
                n = 0
                for (r = 0; r < nr; r++)
                    if (rate[r, "ctrio", C[i]] > 0 && rate[r, P[j], C[i]] > 0)
                        q[++n] = rate[r, "ctrio", C[i]] / rate[r, P[j], C[i]]
                if (n) printf "capacity %s: ctrio / %s rate, median of %d paired rounds: %.2fx\n", C[i], P[j], n, median(q, n)
            }
    }' "$results"
exit $status
