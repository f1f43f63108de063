#!/usr/bin/env bash
# Two builds of an echo server, before and after a change, in alternating
# rounds: the way this project checks that a change to the core moves no
# benchmark (README, "Benchmarks"). Not run by make bench.
#
#   bash bench/ab_echo.sh OLD_SERVER NEW_SERVER [WORKLOAD [ROUNDS]]
#
# Each server is a program taking "PORT HOST", printing "listening on
# HOST:PORT" and exiting 0 on SIGTERM (examples/echo_server of two
# checkouts, say). Each round starts both in turn, the order rotated round
# by round, pinned as the other benchmarks pin (bench_pin), and prints both
# rates, their ratio new/old and each server's CPU ticks; the last line is
# the median of the per-round ratios. Environment: CTRIO_BUILD_DIR (build),
# AB_SECONDS (2), and the servers' own (CTRIO_BACKEND=io_uring to compare on
# the ring).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
bench_name="A/B echo"
bench_keep=

old=$1 new=$2 wl=${3:-pingpong-1} rounds=${4:-12}
build=${CTRIO_BUILD_DIR:-build}
seconds=${AB_SECONDS:-2}
lg=$build/bench/loadgen
declare -A bin=([old]=$old [new]=$new) rate ticks

bench_pin
bench_setup

# one_run old|new: sets rate[S] and ticks[S]
one_run() {
    local s=$1 t0
    bench_start "$s" "${pin_srv[@]}" "${bin[$s]}" 0 127.0.0.1 || exit 1
    t0=$(cpu_ticks "${pid[$s]}")
    rate[$s]=$("${pin_lg[@]}" "$lg" -p "${port[$s]}" -d "$seconds" -w 0.3 "$wl" |
        grep -o "rate=[0-9.]*" | cut -d= -f2)
    ticks[$s]=$(($(cpu_ticks "${pid[$s]}") - t0))
    bench_stop "$s"
}

for ((r = 1; r <= rounds; r++)); do
    if ((r % 2)); then
        one_run old; one_run new
    else
        one_run new; one_run old
    fi
    echo "result workload=$wl round=$r old=${rate[old]} new=${rate[new]} ticks_old=${ticks[old]} ticks_new=${ticks[new]}" |
        tee -a "$results"
done
awk -v wl="$wl" "$bench_awk"'
    { parse(); n++; arr[n] = f["new"] / f["old"] }
    END { printf "%s: median new/old %.3f over %d rounds\n", wl, median(arr, n), n }' "$results"
exit "$status"
