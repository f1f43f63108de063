#!/usr/bin/env bash
# The all-cores echo benchmark (issue #12), run by bench/run.sh (make bench).
#
# Servers, all examples/echo_server of the same build, running side by side
# for the whole benchmark:
#   runs1     --runs 1 0 127.0.0.1     one run, pinned to CPU 0
#   runs2     --runs 2 0 127.0.0.1     two runs pinned to CPUs 0 and 1, one
#                                      SO_REUSEPORT listener each on one port:
#                                      the kernel hashes connections to them
#   runs2cpu  --runs 2 --incoming-cpu  the same, and SO_INCOMING_CPU: a
#                                      connection goes to the run on the CPU
#                                      that took its SYN (over loopback, the
#                                      client's), falling back to the hash
#   procs2    two processes, --runs 1 each, one under taskset -c 0 and one
#             under taskset -c 1: the control that shares nothing by
#             construction (part 2 only: load generator i loads process i)
# This machine has 2 CPUs, so no scaling curve: what can be measured is
#  1. rate and server CPU time per op (every thread, /proc schedstat) under
#     the same load: one bench/loadgen, not pinned (a pinned one shares a
#     CPU with one of runs2's runs and with none of runs1's, on purpose; not
#     pinned it goes where there is room, as a client would). The issue's
#     goal: runs2/runs1 within 5%. Read it with the perf figures of part 3:
#     the client shares a CPU with a run, and a run with half the
#     connections finds fewer ready per wait, so it sleeps and is woken more
#     often per round trip (epoll_wait and context switches per round trip);
#     runs2cpu puts every connection of the one client on one run.
#  2. the same with two load generators, one pinned to each CPU, each with
#     half the connections. runs2 against runs1, runs2cpu against runs2
#     (hashed: half of each client's connections served from the other CPU,
#     every wakeup crossing CPUs), and runs2cpu against procs2, the same
#     placement with no ctrio group at all: goal "nothing shared on the hot
#     path", CPU per op within 5%.
#  3. system calls, context switches and CPU migrations of each server per
#     round trip (perf stat), after a warm-up, under both loads.
# Rounds are paired: in each round every server runs each workload once, the
# order of the servers turning every round, so a burst of load from elsewhere
# on the machine hurts them alike; the tables give the best of the rounds and
# the medians of the per-round ratios (read those: this VM is shared). The
# runs2 and runs2cpu columns "busiest" give the CPU share of their busier run
# (0.50: an even split).
#
# Environment: CTRIO_BUILD_DIR (default build), RUNS_BENCH_SECONDS (1),
# RUNS_BENCH_ROUNDS (5), RUNS_BENCH_WORKLOADS ("pingpong-100 stream-16k-8"),
# RUNS_BENCH_SPLIT ("pingpong-50 stream-16k-4": each of the two load
# generators' workload in part 2), RUNS_BENCH_TRACER (perf or none; default
# perf when it works).
# Exit status 1 if a server failed a workload (a byte lost or corrupted, a
# connection dropped) or did not exit cleanly on SIGTERM.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
bench_name="all-cores benchmark"

build=${CTRIO_BUILD_DIR:-build}
seconds=${RUNS_BENCH_SECONDS:-1}
rounds=${RUNS_BENCH_ROUNDS:-5}
workloads=${RUNS_BENCH_WORKLOADS:-pingpong-100 stream-16k-8}
split=${RUNS_BENCH_SPLIT:-pingpong-50 stream-16k-4}
loadgen=$build/bench/loadgen
srvbin=$build/examples/echo_server
# the processes, and the servers measured: procs2 is two processes
procs=(runs1 runs2 runs2cpu procs2a procs2b)
declare -A nruns=([runs1]=1 [runs2]=2 [runs2cpu]=2 [procs2a]=1 [procs2b]=1)
declare -A sargs=([runs2cpu]=--incoming-cpu)
declare -A cpus=([runs1]=0-1 [runs2]=0-1 [runs2cpu]=0-1 [procs2a]=0 [procs2b]=1)
declare -A members=([runs1]=runs1 [runs2]=runs2 [runs2cpu]=runs2cpu [procs2]="procs2a procs2b")

if [ ! -x "$loadgen" ] || [ ! -x "$srvbin" ]; then
    echo "all-cores benchmark: $loadgen or $srvbin not built; skipped"
    exit 0
fi
if [ "$(nproc)" -lt 2 ] || ! command -v taskset >/dev/null 2>&1; then
    echo "all-cores benchmark: needs 2 CPUs and taskset; skipped"
    exit 0
fi

bench_setup

# the pids of a server's processes
pids() {
    local m
    for m in ${members[$1]}; do
        echo "${pid[$m]}"
    done
}

# per-thread CPU time so far, ns, one line per thread of the server's
# processes: "TID NS" (schedstat: run time first)
thread_ns() {
    local p t
    for p in $(pids "$1"); do
        for t in /proc/"$p"/task/*; do
            echo "${t##*/} $(cut -d' ' -f1 "$t/schedstat" 2>/dev/null || echo 0)"
        done
    done
}

# "TOTAL BUSIEST": the CPU time, ns, of the server's threads between two
# thread_ns snapshots, and the largest share of it one thread took (the
# main thread of a group waits and takes none)
cpu_delta() {
    awk 'FNR == NR { a[$1] = $2; next } { d = $2 - a[$1]; t += d; if (d > m) m = d }
         END { printf "%.0f %.2f\n", t, (t > 0 ? m / t : 0) }' "$1" "$2"
}

# one_load MODE ROUND SERVER WORKLOAD: runs the load and appends a line
# "result mode=M round=R server=S workload=W rate=.. all_ops=.. cpu_ns=..
# busiest=.. lg_busy=.. errors=.." to $results. MODE single: one loadgen,
# not pinned; split: two, pinned to CPUs 0 and 1, each running WORKLOAD,
# their rates and ops summed (against procs2, loadgen i loads process i).
one_load() {
    local mode=$1 r=$2 s=$3 w=$4 lines rc=0 i p
    local -a lgp mem
    read -r -a mem <<<"${members[$s]}"
    thread_ns "$s" >"$tmp/t0"
    if [ "$mode" = single ]; then
        lines=$("$loadgen" -p "${port[$s]}" -d "$seconds" -l "$s" "$w" \
            2>"$tmp/lg.err") || rc=1
    else
        for i in 0 1; do
            p=${port[${mem[$((i % ${#mem[@]}))]}]}
            taskset -c "$i" "$loadgen" -p "$p" -d "$seconds" -l "$s" "$w" \
                >"$tmp/lg$i.out" 2>"$tmp/lg$i.err" &
            lgp[i]=$!
        done
        for i in 0 1; do
            wait "${lgp[i]}" || rc=1
        done
        lines=$(cat "$tmp/lg0.out" "$tmp/lg1.out")
        cat "$tmp/lg0.err" "$tmp/lg1.err" >"$tmp/lg.err"
    fi
    thread_ns "$s" >"$tmp/t1"
    if [ "$rc" -ne 0 ]; then
        echo "all-cores benchmark: $s failed $w ($mode, round $r): $(tr '\n' ' ' <"$tmp/lg.err")" >&2
        status=1
    fi
    awk -v mode="$mode" -v r="$r" -v s="$s" -v w="$w" -v c="$(cpu_delta "$tmp/t0" "$tmp/t1")" \
        -v rc="$rc" "$bench_awk"'
        $1 == "result" {
            parse()
            sum += f["rate"]; ops += f["all_ops"]; err += f["errors"]; n++
            lgb = lgb == "" ? f["lg_busy"] : lgb "+" f["lg_busy"]
        }
        END {
            split(c, cc, " ")
            if (n == 0 || rc) err++
            printf "result mode=%s round=%d server=%s workload=%s rate=%.0f all_ops=%d cpu_ns=%.0f busiest=%s lg_busy=%s errors=%d\n",
                   mode, r, s, w, sum, ops, cc[1], cc[2], lgb == "" ? "-" : lgb, err
        }' <<<"$lines" >>"$results"
}

echo "echo_server --runs 1 against --runs 2 (and --incoming-cpu) over loopback, runs pinned;"
echo "$rounds paired rounds of ${seconds} s per workload, the servers' order turning each round"
bench_loadavg before
for s in "${procs[@]}"; do
    # (taskset execs the server: $! stays its pid)
    if ! bench_start "$s" taskset -c "${cpus[$s]}" "$srvbin" --runs "${nruns[$s]}" \
        ${sargs[$s]:+"${sargs[$s]}"} 0 127.0.0.1 || [ -z "${pid[$s]:-}" ]; then
        exit 1
    fi
done

for ((r = 1; r <= rounds; r++)); do
    for mode in single split; do
        wl=$workloads
        srv=(runs1 runs2 runs2cpu)
        if [ "$mode" = split ]; then
            wl=$split
            srv=(runs1 runs2 runs2cpu procs2)
        fi
        for w in $wl; do
            for ((j = 0; j < ${#srv[@]}; j++)); do
                one_load "$mode" "$r" "${srv[$(((j + r) % ${#srv[@]}))]}" "$w"
            done
        done
    done
done
bench_loadavg after

# Tables: per mode and workload, the best rate and least CPU per op of each
# server over the rounds, then the medians of the per-round ratios of the
# pairs (numerator:denominator).
report() {
    local mode=$1 wl=$2 servers=$3 pairs=$4 goalpair=$5 goaltext=$6 title=$7
    echo
    echo "$title"
    awk -v mode="$mode" -v workloads="$wl" -v servers="$servers" -v pairs="$pairs" \
        -v goalpair="$goalpair" -v goaltext="$goaltext" "$bench_awk"'
        # paired medians of pair a/b on workload w: sets QR (rate), QC (CPU
        # per op), AH (rounds a had the higher rate); returns the round count
        function paired(w, a, b,   r, n, x, y, q, qc) {
            n = 0; AH = 0
            for (r = 1; r <= nr; r++) {
                x = rate[w, a, r] + 0; y = rate[w, b, r] + 0
                if (!(x > 0 && y > 0)) continue
                q[++n] = x / y; qc[n] = cpu[w, a, r] / cpu[w, b, r]; AH += x >= y
            }
            if (n) { QR = median(q, n); QC = median(qc, n) }
            return n
        }
        function cell(v, fmt) { return v > 0 ? sprintf(fmt, v) : "-" }
        $1 == "result" {
            parse()
            if (f["mode"] != mode) next
            w = f["workload"]; s = f["server"]; r = f["round"]
            if (r > nr) nr = r
            if (f["errors"] + 0 > 0 || !(f["all_ops"] + 0 > 0)) { bad[w, s] = 1; next }
            rate[w, s, r] = f["rate"]; cpu[w, s, r] = f["cpu_ns"] / f["all_ops"] / 1000
            share[w, s, r] = f["busiest"]
        }
        END {
            nw = split(workloads, W, " "); ns = split(servers, S, " "); np = split(pairs, P, " ")
            line = sprintf("%-14s %-5s", "workload", "unit")
            for (j = 1; j <= ns; j++) line = line sprintf(" %9s", S[j])
            line = line sprintf(" %-5s", "us/op")
            for (j = 1; j <= ns; j++) line = line sprintf(" %7s", S[j])
            for (j = 1; j <= np; j++) { split(P[j], ab, ":"); line = line sprintf(" %22s", ab[1] "/" ab[2] " rate CPU") }
            print line " busiest (runs2 runs2cpu)"
            for (i = 1; i <= nw; i++) {
                w = W[i]; unit = w ~ /^pingpong/ ? "rt/s" : "MB/s"
                line = sprintf("%-14s %-5s", w, unit)
                for (j = 1; j <= ns; j++) {
                    b = 0
                    for (r = 1; r <= nr; r++) if (rate[w, S[j], r] + 0 > b) b = rate[w, S[j], r] + 0
                    line = line sprintf(" %9s", bad[w, S[j]] ? "FAIL" : cell(b, "%.0f"))
                }
                line = line sprintf(" %-5s", "")
                for (j = 1; j <= ns; j++) {
                    c = 0
                    for (r = 1; r <= nr; r++) {
                        y = cpu[w, S[j], r] + 0
                        if (y > 0 && (c == 0 || y < c)) c = y
                    }
                    line = line sprintf(" %7s", cell(c, "%.2f"))
                }
                for (j = 1; j <= np; j++) {
                    split(P[j], ab, ":")
                    n = paired(w, ab[1], ab[2])
                    line = line sprintf(" %22s", n ? sprintf("%.2f %d/%d %.2f", QR, AH, n, QC) : "-")
                    if (P[j] == goalpair) {
                        goal = goal sprintf("%s%s %s", goal == "" ? "" : ", ", w,
                                            n ? sprintf("%.2fx", QC) : "not measured")
                        if (!n || QC > 1.05) miss = 1
                    }
                }
                n = 0; delete sh
                for (j = 1; j <= ns; j++) {
                    n = 0; delete sh
                    for (r = 1; r <= nr; r++) if (rate[w, S[j], r] > 0) sh[++n] = share[w, S[j], r]
                    if (S[j] ~ /^runs2/) line = line sprintf(" %s", n ? sprintf("%.2f", median(sh, n)) : "-")
                }
                print line
            }
            print "(rate: best of the rounds; us/op: server CPU time per round trip or 16 KiB block, all its"
            print " threads, least of the rounds; a/b: medians of the per-round ratios of rate, rounds a"
            print " was ahead, CPU per op; busiest: the share of the CPU time of runs2, runs2cpu its"
            print " busier run took, median; 0.50: an even split)"
            split(goalpair, gp, ":")
            printf "goal #12, %s (server CPU per op, %s/%s paired median <= 1.05): %s (%s)\n",
                   goaltext, gp[1], gp[2], miss ? "not met" : "met", goal
        }' "$results"
}

report single "$workloads" "runs1 runs2 runs2cpu" "runs2:runs1 runs2cpu:runs1" runs2:runs1 \
    "the same load" "1. the same load, one loadgen (not pinned): rate and server CPU per op"
report split "$split" "runs1 runs2 runs2cpu procs2" "runs2:runs1 runs2cpu:runs2 runs2cpu:procs2" \
    runs2cpu:procs2 "nothing shared on the hot path" \
    "2. two loadgens pinned to CPUs 0 and 1, each with the workload named (rates summed)"

# ---- 3. system calls and context switches per round trip ---------------------
tracer=$(bench_tracer "${RUNS_BENCH_TRACER:-}" raw_syscalls:sys_enter,context-switches)

# switches SERVER: "VOLUNTARY NONVOLUNTARY" context switches so far, every
# thread of the server: a run that blocks in epoll_wait and is woken again
# switches voluntarily; another task taking its CPU preempts it
switches() {
    local p
    for p in $(pids "$1"); do
        cat /proc/"$p"/task/*/status 2>/dev/null
    done | awk '$1 == "voluntary_ctxt_switches:" { v += $2 } $1 == "nonvoluntary_ctxt_switches:" { n += $2 }
                END { printf "%d %d\n", v, n }'
}

# count MODE SERVER WORKLOAD N: "calls epoll_wait reads writes ctxsw migrations
# sleeps preemptions" per round trip for N round trips after a warm-up (perf stat on every thread
# of the server); MODE single: one loadgen, not pinned; split: two pinned to
# CPUs 0 and 1, N/2 round trips each (against procs2: one per process)
count() {
    local mode=$1 s=$2 w=$3 n=$4 go=$tmp/go i k=1 lrc=0 p
    local -a lgp mem pin
    read -r -a mem <<<"${members[$s]}"
    [ "$mode" = split ] && k=2
    rm -f "$go" "$tmp"/count*.out
    for ((i = 0; i < k; i++)); do
        pin=()
        [ "$mode" = split ] && pin=(taskset -c "$i")
        p=${port[${mem[$((i % ${#mem[@]}))]}]}
        "${pin[@]}" "$loadgen" -p "$p" -n $((n / k)) -g "$go" -w 0.25 -l "$s" "$w" \
            >"$tmp/count$i.out" 2>"$tmp/count$i.err" &
        lgp[i]=$!
    done
    for ((i = 0; i < k; i++)); do
        if ! wait_for "$tmp/count$i.out" '^ready' 100; then
            kill -TERM "${lgp[@]}" 2>/dev/null || true
            wait "${lgp[@]}" 2>/dev/null || true
            return 1
        fi
    done
    bench_trace_start "$(pids "$s" | paste -sd, -)" "$(bench_events \
        raw_syscalls:sys_enter,context-switches,cpu-migrations epoll_wait epoll_pwait epoll_pwait2 \
        read readv recvfrom recvmsg write writev sendto sendmsg)"
    local sw0 sw1
    sw0=$(switches "$s")
    touch "$go"
    for ((i = 0; i < k; i++)); do
        wait_for "$tmp/count$i.out" '^result' 600 || true
    done
    sw1=$(switches "$s")
    bench_trace_stop
    rm -f "$go"
    for ((i = 0; i < k; i++)); do
        wait "${lgp[i]}" || lrc=1
    done
    [ "$lrc" -eq 0 ] || return 1
    awk -F, -v n=$((n / k * k)) -v sw="$sw0 $sw1" "$bench_awk"'
        { syscount() }
        $3 == "context-switches" || $3 == "cpu-migrations" { sc[$3] = $1 + 0 }
        END {
            split(sw, w, " ")
            printf "%.2f %.2f %.2f %.2f %.2f %.3f %.3f %.3f\n", sc[""] / n,
                calls("epoll_wait epoll_pwait epoll_pwait2") / n, calls("read readv recvfrom recvmsg") / n,
                calls("write writev sendto sendmsg") / n, sc["context-switches"] / n,
                sc["cpu-migrations"] / n, (w[3] - w[1]) / n, (w[4] - w[2]) / n
        }' "$tmp/trace.log"
}

echo
if [ "$tracer" = none ]; then
    echo "3. system calls: not counted (no perf, or RUNS_BENCH_TRACER=none)"
else
    echo "3. per round trip, 50000 round trips after a warm-up, every thread of the server (perf"
    echo "   stat; ctx sw: its context switches, of which sleeps: blocked in epoll_wait and woken,"
    echo "   and preempted: by another task, from /proc): pingpong-100 from one loadgen (not"
    echo "   pinned), then pingpong-50 from each of two pinned to CPUs 0 and 1"
    printf "%-9s %-17s %8s %11s %8s %8s %8s %8s %10s %11s\n" server workload calls epoll_wait reads writes \
        "ctx sw" sleeps preempted migrations
    for spec in single:runs1:pingpong-100 single:runs2:pingpong-100 single:runs2cpu:pingpong-100 \
        split:runs1:pingpong-50 split:runs2:pingpong-50 split:runs2cpu:pingpong-50 split:procs2:pingpong-50; do
        IFS=: read -r mode s w <<<"$spec"
        label=$w
        [ "$mode" = split ] && label="2 x $w"
        if c=$(count "$mode" "$s" "$w" 50000); then
            read -r calls ew rd wr cs mig vol inv <<<"$c"
            printf "%-9s %-17s %8s %11s %8s %8s %8s %8s %10s %11s\n" "$s" "$label" "$calls" "$ew" "$rd" \
                "$wr" "$cs" "$vol" "$inv" "$mig"
        else
            printf "%-9s %-17s %s\n" "$s" "$label" "count failed: $(cat "$tmp"/count*.err | tr '\n' ' ')"
            status=1
        fi
    done
fi

bench_stop "${procs[@]}"
exit "$status"
