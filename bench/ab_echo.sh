#!/usr/bin/env bash
# Two builds of an echo server, before and after a change, in alternating
# rounds: the way this project checks that a change to the core moves no
# benchmark (README, "Benchmarks"). Not run by make bench.
#
#   bash bench/ab_echo.sh OLD_SERVER NEW_SERVER [WORKLOAD [ROUNDS]]
#
# Each server is a program taking "PORT HOST" and printing "listening on
# HOST:PORT" (examples/echo_server of two checkouts, say). Each round starts
# both in turn, the order rotated round by round, pinned to CPU 1 with
# bench/loadgen on CPU 0, and prints both rates, their ratio new/old and
# each server's CPU ticks; the last line is the median of the per-round
# ratios. Environment: CTRIO_BUILD_DIR (build), AB_SECONDS (2), and the
# server's own (CTRIO_BACKEND=io_uring to compare on the ring).
set -euo pipefail
old=$1 new=$2 wl=${3:-pingpong-1} rounds=${4:-12}
build=${CTRIO_BUILD_DIR:-build}
seconds=${AB_SECONDS:-2}
lg=$build/bench/loadgen
tmp=$(mktemp -d)
spid=
cleanup() {
    if [ -n "$spid" ]; then kill -KILL "$spid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# one_run SERVER: prints "RATE TICKS"
one_run() {
    local i port t0 t1 rate
    taskset -c 1 "$1" 0 127.0.0.1 >"$tmp/srv.out" 2>&1 &
    spid=$!
    for ((i = 0; i < 100; i++)); do
        grep -q "listening on" "$tmp/srv.out" && break
        sleep 0.05
    done
    port=$(grep -o "listening on [^ ]*" "$tmp/srv.out" | head -1 | sed 's/.*://')
    t0=$(ticks "$spid")
    rate=$(taskset -c 0 "$lg" -p "$port" -d "$seconds" -w 0.3 "$wl" |
        grep -o "rate=[0-9.]*" | cut -d= -f2)
    t1=$(ticks "$spid")
    kill "$spid"
    wait "$spid" 2>/dev/null || true
    spid=
    echo "$rate $((t1 - t0))"
}

for ((r = 1; r <= rounds; r++)); do
    if ((r % 2)); then
        a=$(one_run "$old"); b=$(one_run "$new")
    else
        b=$(one_run "$new"); a=$(one_run "$old")
    fi
    echo "round $r old ${a% *} new ${b% *} ratio $(awk -v a="${a% *}" -v b="${b% *}" \
        'BEGIN { printf "%.3f", b / a }') ticks old ${a#* } new ${b#* }"
done | tee "$tmp/rounds"
awk '{ print $8 }' "$tmp/rounds" | sort -n | awk -v wl="$wl" '{ v[NR] = $1 }
    END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
          printf "%s: median new/old %.3f over %d rounds\n", wl, m, NR }'
