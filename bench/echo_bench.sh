#!/usr/bin/env bash
# The echo-server benchmark (issue #4), run by bench/run.sh (make bench).
#
# Servers, each "NAME PORT [HOST]" printing "listening on HOST:PORT" first:
#   raw          bench/raw_epoll_echo   the reference: hand-written epoll loop
#   uring        bench/raw_uring_echo   the second reference (issue #11):
#                                       hand-written io_uring loop (liburing)
#   libuv        bench/uv_echo          what users would otherwise pick
#   ctrio        examples/echo_server   ctrio_serve_tcp, a task per connection
#   ctrio-uring  examples/echo_server   the same, with CTRIO_BACKEND=io_uring
#                                       in its environment
# ctrio is compared with raw and libuv, ctrio-uring with raw and uring.
# Each server runs pinned to one CPU, bench/loadgen to another; all servers
# run for the whole benchmark and the workloads alternate between them
# (workload by workload, round by round), so that a burst of load from
# elsewhere on the machine hurts them alike; each figure is the best of the
# rounds. A second table pairs the servers round by round (the median of the
# per-round ratios, and how many rounds ctrio led), beside the load
# generator's own CPU share: near 1.00 the client, not the server, bounds
# the rate. mixed-4-4 runs 4 floods (64 KiB writes, 1 MiB in flight) beside
# 4 ping-pongs (issue #8: busy connections must not delay everyone else);
# its rate and latency are the ping-pongs', and its goal is its own: paired
# medians of ping-pong rate >= 0.9 x raw and p99 <= 2 x raw, stated in a
# table of their own beside the floods' MB/s. Then the system calls of each server per round trip on busy
# connections are counted after a warm-up (perf's syscall tracepoints, or
# strace -c), which also shows whether epoll_ctl happens in steady state;
# io_uring_enter is counted beside epoll_wait (issue #11's goal for
# ctrio-uring: fewer than 1 system call per round trip on pingpong-100).
# A server that exits 77 at start (raw_uring_echo where io_uring is
# refused) is left out.
#
# Environment: CTRIO_BUILD_DIR (default build), ECHO_BENCH_SECONDS (1),
# ECHO_BENCH_ROUNDS (3), ECHO_BENCH_WORKLOADS, ECHO_BENCH_SERVERS
# ("raw uring libuv ctrio ctrio-uring"), ECHO_BENCH_CTRIO (the ctrio server binary),
# ECHO_BENCH_TRACER (perf, strace or none; default perf when it works),
# ECHO_BENCH_KEEP (non-empty: keep the temporary directory of raw results).
# Exit status 1 if a server failed a workload (lost or corrupted a byte,
# dropped a connection) or did not exit cleanly on SIGTERM.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
bench_name="echo benchmark"
bench_keep=${ECHO_BENCH_KEEP:-}

build=${CTRIO_BUILD_DIR:-build}
seconds=${ECHO_BENCH_SECONDS:-1}
rounds=${ECHO_BENCH_ROUNDS:-3}
workloads=${ECHO_BENCH_WORKLOADS:-pingpong-1 pingpong-100 stream-16k stream-16k-8 bulk-16k mixed-4-4 churn}
want_servers=${ECHO_BENCH_SERVERS:-raw uring libuv ctrio ctrio-uring}
loadgen=$build/bench/loadgen

declare -A bin=(
    [raw]=$build/bench/raw_epoll_echo
    [uring]=$build/bench/raw_uring_echo
    [libuv]=$build/bench/uv_echo
    [ctrio]=${ECHO_BENCH_CTRIO:-$build/examples/echo_server}
    [ctrio-uring]=${ECHO_BENCH_CTRIO:-$build/examples/echo_server}
)
# each server's environment (env(1) assignments)
declare -A senv=(
    [ctrio-uring]=CTRIO_BACKEND=io_uring
)
# the pairs compared, numerator:denominator, in the order of the tables
pairs="ctrio:raw ctrio:libuv ctrio-uring:raw ctrio-uring:uring"

if [ ! -x "$loadgen" ] || [ ! -x "${bin[raw]}" ]; then
    echo "echo benchmark: $loadgen or ${bin[raw]} not built; skipped"
    exit 0
fi

bench_pin
bench_tw_reuse
bench_setup

echo "echo servers over loopback: $pinning; best of $rounds rounds of ${seconds} s per workload"
bench_loadavg before

for s in $want_servers; do
    if [ -x "${bin[$s]:-}" ]; then
        # (env execs the server: $! stays its pid)
        bench_start "$s" "${pin_srv[@]}" env ${senv[$s]:+"${senv[$s]}"} "${bin[$s]}" 0 127.0.0.1 || status=1
    else
        echo "($s: ${bin[$s]:-?} not built; left out)"
    fi
done

# ---- throughput and latency ------------------------------------------------
# shellcheck disable=SC2317 # called by bench_rounds
load_one() {
    bench_load "$1" "$2" "$3" ns "${pin_lg[@]}" "$loadgen" "${lg_opts[@]}" -p "${port[$1]}" \
        -d "$seconds" -l "$1" "$2"
}
bench_rounds load_one
bench_loadavg after
echo

# the pairs of the tables of which both servers run
run_pairs=""
for p in $pairs; do
    if [[ " ${running[*]} " == *" ${p%%:*} "* && " ${running[*]} " == *" ${p##*:} "* ]]; then
        run_pairs+="${run_pairs:+ }$p"
    fi
done

# best rate per (server, workload): "workload server rate unit p50 p99 errors"
best=$tmp/best
awk "$bench_awk"'
    $1 == "result" {
        parse()
        k = f["workload"] SUBSEP f["server"]
        if (f["errors"] + 0 > 0) { err[k] = 1; unit[k] = f["unit"] }
        else if (!(k in rate) || f["rate"] + 0 > rate[k] + 0) {
            rate[k] = f["rate"]; unit[k] = f["unit"]; p50[k] = f["p50_us"]; p99[k] = f["p99_us"]
        }
        seen[k] = 1
        # mixed: the floods, not the ping-pongs counted in all_ops, take the CPU
        if (f["errors"] + 0 == 0 && f["all_ops"] + 0 > 0 && !("flood_mbs" in f)) {
            c = f["cpu_ns"] / f["all_ops"] / 1000
            if (!(k in cpu) || c < cpu[k]) cpu[k] = c
        }
    }
    END {
        for (k in seen) {
            split(k, p, SUBSEP)
            printf "%s %s %s %s %s %s %d %s\n", p[1], p[2], (k in rate) ? rate[k] : 0,
                unit[k], (k in rate) ? p50[k] : 0, (k in rate) ? p99[k] : 0, (k in err) ? 1 : 0,
                (k in cpu) ? cpu[k] : 0
        }
    }' "$results" >"$best"

awk -v workloads="$workloads" -v servers="${running[*]}" -v pairs="$run_pairs" '
    { rate[$1, $2] = $3; unit[$1] = $4; p50[$1, $2] = $5; p99[$1, $2] = $6; err[$1, $2] = $7
      cpu[$1, $2] = $8; have[$1, $2] = 1 }
    function cpucell(w, s) {
        if (!((w, s) in have) || !(cpu[w, s] > 0)) return "-"
        return sprintf("%.2f", cpu[w, s])
    }
    function cpuratio(w, a, b) {
        if (!(cpu[w, a] > 0) || !(cpu[w, b] > 0)) return "-"
        return sprintf("%.2f", cpu[w, a] / cpu[w, b])
    }
    function cell(w, s) {
        if (!((w, s) in have)) return "-"
        if (!(rate[w, s] > 0)) return "FAIL"
        return sprintf("%.0f", rate[w, s])
    }
    function ratio(w, a, b) {
        if (!((w, a) in have) || !((w, b) in have) || !(rate[w, b] > 0)) return "-"
        return sprintf("%.2f", rate[w, a] / rate[w, b])
    }
    # the head of a table: workload, unit/op, a column per server, per pair
    function head(second,   j, line) {
        line = sprintf("%-14s %-7s", "workload", second)
        for (j = 1; j <= ns; j++) line = line sprintf(" %11s", S[j])
        for (j = 1; j <= np; j++) line = line sprintf(" %17s", PA[j] "/" PB[j])
        print line
    }
    BEGIN {
        nw = split(workloads, W, " "); ns = split(servers, S, " ")
        for (j = 1; j <= ns; j++) run[S[j]] = 1
        np = split(pairs, P, " ")
        for (j = 1; j <= np; j++) { split(P[j], ab, ":"); PA[j] = ab[1]; PB[j] = ab[2] }
    }
    END {
        has_uv = "libuv" in run
        has_ct = "ctrio" in run
        head("unit")
        met = 0; total = 0; miss = ""
        for (i = 1; i <= nw; i++) {
            w = W[i]; line = sprintf("%-14s %-7s", w, unit[w])
            for (j = 1; j <= ns; j++) line = line sprintf(" %11s", cell(w, S[j]))
            for (j = 1; j <= np; j++) line = line sprintf(" %17s", ratio(w, PA[j], PB[j]))
            print line
            if (has_ct && w !~ /^mixed/) {
                total++
                r1 = ratio(w, "ctrio", "raw"); r2 = ratio(w, "ctrio", "libuv")
                ok = r1 != "-" && r1 + 0 >= 0.95 && (!has_uv || (r2 != "-" && r2 + 0 >= 1.0))
                if (ok) met++; else miss = miss " " w
            }
        }
        print ""
        line = sprintf("%-14s", "latency us")
        for (j = 1; j <= ns; j++) line = line sprintf(" %17s", S[j] " p50/p99")
        print line
        for (i = 1; i <= nw; i++) {
            w = W[i]; line = sprintf("%-14s", w)
            for (j = 1; j <= ns; j++) {
                s = S[j]
                if ((w, s) in have && rate[w, s] > 0)
                    line = line sprintf(" %17s", sprintf("%.1f/%.1f", p50[w, s], p99[w, s]))
                else
                    line = line sprintf(" %17s", "-")
            }
            print line
        }
        print ""
        print "server CPU time per op, us (least of the rounds; less noisy than the rates):"
        head("op")
        for (i = 1; i <= nw; i++) {
            w = W[i]
            op = w ~ /^mixed/ ? "-" : unit[w] == "MB/s" ? "16K blk" : unit[w] == "conn/s" ? "conn" : "rt"
            line = sprintf("%-14s %-7s", w, op)
            for (j = 1; j <= ns; j++) line = line sprintf(" %11s", cpucell(w, S[j]))
            for (j = 1; j <= np; j++) line = line sprintf(" %17s", cpuratio(w, PA[j], PB[j]))
            print line
        }
        print ""
        if (has_ct && total == 0)
            print "goal (ctrio >= 0.95 x raw and >= 1.0 x libuv): no workload but mixed ran; its goal below"
        else if (has_ct)
            printf "goal (ctrio >= 0.95 x raw and >= 1.0 x libuv on every workload but mixed, its goal below): met on %d of %d%s\n",
                   met, total, miss == "" ? "" : " (not on:" miss ")"
        else
            print "goal: no ctrio server built, nothing to compare"
    }' "$best"

# Each round runs the servers one after another, close in time: the ratio of
# two servers within a round is less exposed to the machine's drift than the
# ratio of two bests. Beside it, the load generator's own CPU share (one CPU
# = 1.00): near 1.00 the rate is bound by the client, and a server's effect
# on it is how cheap it makes the client's work (the size of its writes, say).
echo
echo "per round (paired): median of the ratios, and in how many rounds the first server was ahead;"
echo "load generator busy: its CPU share while it ran (median over servers and rounds)"
awk -v workloads="$workloads" -v servers="${running[*]}" -v pairs="$run_pairs" "$bench_awk"'
    $1 == "result" {
        parse()
        w = f["workload"]; s = f["server"]; k = ++cnt[w, s]
        rate[w, s, k] = f["errors"] + 0 > 0 ? 0 : f["rate"] + 0
        p99[w, s, k] = f["p99_us"] + 0
        cpu[w, s, k] = f["all_ops"] + 0 > 0 ? f["cpu_ns"] / f["all_ops"] : 0
        if ("flood_mbs" in f) flood[w, s, k] = f["flood_mbs"] + 0
        if ("lg_busy" in f) busy[w, ++nb[w]] = f["lg_busy"] + 0
    }
    # pmed, pmedv (bench/lib.sh): paired medians of rate, p99 (a ahead when
    # lower) and cpu (server CPU per op, the same)
    function paired(w, a, b, v,   m) {
        m = v == "p99" ? pmedv(w, a, b, p99, 0) : pmed(w, a, b)
        if (m == 0) return sprintf("%17s", "-")
        return sprintf("%9.3f %3d/%-3d", PM, PA, m)
    }
    function floodmed(w, s,   k, m, arr) {
        m = 0
        for (k = 1; k <= cnt[w, s]; k++)
            if (rate[w, s, k] > 0 && (w, s, k) in flood) arr[++m] = flood[w, s, k]
        return m ? sprintf("%.0f", median(arr, m)) : "-"
    }
    BEGIN {
        nw = split(workloads, W, " "); ns = split(servers, S, " ")
        for (j = 1; j <= ns; j++) run[S[j]] = 1
        np = split(pairs, P, " ")
        for (j = 1; j <= np; j++) { split(P[j], ab, ":"); A[j] = ab[1]; B[j] = ab[2] }
    }
    END {
        line = sprintf("%-14s", "workload")
        for (j = 1; j <= np; j++) line = line sprintf(" %17s", A[j] "/" B[j])
        print line sprintf(" %10s", "lg busy")
        nm = 0
        for (i = 1; i <= nw; i++) {
            w = W[i]
            if (w ~ /^mixed/) M[++nm] = w
            line = sprintf("%-14s", w)
            for (j = 1; j <= np; j++) line = line " " paired(w, A[j], B[j], "rate")
            print line sprintf(" %10s", busymed(w))
        }
        if ("ctrio-uring" in run && "raw" in run) {
            # issue #11: ctrio on io_uring against the raw epoll server, paired
            split("pingpong-100:1.2 churn:1.2 stream-16k:1.0 stream-16k-8:1.0 bulk-16k:1.0 pingpong-1:1.0", G, " ")
            gm = 0; gt = 0; gmiss = ""; gr = 0
            for (g = 1; g in G; g++) {
                split(G[g], gv, ":")
                if (!index(" " workloads " ", " " gv[1] " ")) continue
                gt++
                m = pmed(gv[1], "ctrio-uring", "raw")
                if (m > gr) gr = m
                if (m > 0 && PM >= gv[2]) gm++
                else gmiss = gmiss sprintf(" %s %.2f<%.1f", gv[1], PM, gv[2])
            }
            if (gt > 0)
                printf "goal #11 (ctrio-uring/raw, paired: pingpong-100, churn >= 1.2; streams, bulk, pingpong-1 >= 1.0; over >= 12 rounds, here %d): met on %d of %d%s\n",
                       gr, gm, gt, gmiss == "" ? "" : " (not on:" gmiss ")"
            if (index(" " workloads " ", " pingpong-100 ")) {
                m = pmedv("pingpong-100", "ctrio-uring", "raw", cpu, 0)
                if (m > 0)
                    printf "goal #11 (server CPU per round trip on pingpong-100 <= 0.8x raw, paired): %s (%.2fx, %d rounds)\n",
                           PM <= 0.8 ? "met" : "not met", PM, m
            }
        }
        if (nm == 0) exit
        # issue #8: ping-pongs beside floods; the p99 ratio counts the first
        # server ahead when its p99 is lower
        print ""
        print "floods beside ping-pongs (mixed-F-P): the ping-pongs paired as above (p99: the first"
        print "server ahead when lower); the floods, MB/s echoed, median over the rounds"
        printf "%-14s %-18s %17s %17s\n", "workload", "pair", "rate", "p99"
        for (i = 1; i <= nm; i++) {
            w = M[i]
            for (j = 1; j <= np; j++)
                printf "%-14s %-18s %s %s\n", w, A[j] "/" B[j], paired(w, A[j], B[j], "rate"),
                       paired(w, A[j], B[j], "p99")
            line = sprintf("%-14s %-18s", w, "flood MB/s")
            for (j = 1; j <= ns; j++) line = line sprintf(" %s %s", S[j], floodmed(w, S[j]))
            print line
        }
        for (i = 1; i <= nm; i++) {
            w = M[i]
            for (c = 1; c <= 2; c++) {
                s = c == 1 ? "ctrio" : "ctrio-uring"
                if (!(s in run) || !("raw" in run)) continue
                nr = pmed(w, s, "raw"); rr = PM
                np99 = pmedv(w, s, "raw", p99, 0); pr = PM
                if (nr == 0 || np99 == 0)
                    verdict = "not measured (no clean paired round of " s " and raw)"
                else
                    verdict = sprintf("%s (rate %.2fx raw, p99 %.2fx raw, paired medians of %d rounds)",
                                      rr >= 0.9 && pr <= 2.0 ? "met" : "not met", rr, pr, nr)
                printf "goal %s, %s (ping-pong rate >= 0.9x raw and p99 <= 2x raw): %s\n", w, s, verdict
            }
        }
    }' "$results"

# ---- system calls per round trip -------------------------------------------
tracer=$(bench_tracer "${ECHO_BENCH_TRACER:-}" raw_syscalls:sys_enter strace)

# count_syscalls SERVER WORKLOAD N: prints "calls epoll_wait io_uring_enter reads
# writes epoll_ctl" for N round trips after a warm-up, connections already
# registered (all per round trip but epoll_ctl, a count).
count_syscalls() {
    local s=$1 w=$2 n=$3 ev
    ev=$(bench_events raw_syscalls:sys_enter epoll_wait epoll_pwait epoll_pwait2 epoll_ctl \
        io_uring_enter read readv recvfrom recvmsg write writev sendto sendmsg)
    bench_count "$s" "$ev" 600 "${pin_lg[@]}" "$loadgen" -p "${port[$s]}" -n "$n" -g "$tmp/go" \
        -w 0.25 -l "$s" "$w" || return 1
    # perf stat -x, (syscount), or strace -c: "% time seconds usecs/call
    # calls [errors] syscall", the last line's syscall "total"
    awk -v n="$n" -v tracer="$tracer" "$bench_awk"'
        BEGIN { if (tracer == "perf") FS = "," }
        tracer == "perf" { syscount(); next }
        NF >= 5 && $4 ~ /^[0-9]+$/ { sc[$NF] = $4 }
        END {
            printf "%.2f %.2f %.2f %.2f %.2f %d\n", sc[tracer == "perf" ? "" : "total"] / n,
                calls("epoll_wait epoll_pwait epoll_pwait2") / n, sc["io_uring_enter"] / n,
                calls("read readv recvfrom recvmsg") / n, calls("write writev sendto sendmsg") / n,
                sc["epoll_ctl"]
        }' "$tmp/trace.log"
}

echo
if [ "$tracer" = none ]; then
    if [ "${ECHO_BENCH_TRACER:-}" = none ]; then
        echo "system calls: not counted (ECHO_BENCH_TRACER=none)"
    else
        echo "system calls: neither perf nor strace available; not counted"
    fi
else
    echo "system calls of the server per round trip, connections registered and warmed up"
    echo "($tracer; pingpong-1: 10000 round trips, pingpong-100: 50000)"
    if [ "$tracer" = strace ]; then
        echo "(strace slows the server down, so data is often there before it reads: a server"
        echo " that tries the read before waiting shows fewer calls than it makes untraced)"
    fi
    printf "%-12s %-13s %8s %11s %15s %8s %8s %14s\n" server workload calls epoll_wait \
        io_uring_enter reads writes "epoll_ctl (n)"
    goal11=""
    for s in "${running[@]}"; do
        for spec in pingpong-1:10000 pingpong-100:50000; do
            w=${spec%%:*}
            n=${spec##*:}
            if c=$(count_syscalls "$s" "$w" "$n"); then
                read -r calls ew ue rd wr ctl <<<"$c"
                printf "%-12s %-13s %8s %11s %15s %8s %8s %14s\n" "$s" "$w" "$calls" "$ew" "$ue" \
                    "$rd" "$wr" "$ctl"
                if [ "$s" = ctrio-uring ] && [ "$w" = pingpong-100 ]; then
                    goal11=$(awk -v c="$calls" 'BEGIN { print (c < 1 ? "met" : "not met") }')
                    goal11="$goal11 ($calls)"
                fi
            else
                printf "%-12s %-13s %s\n" "$s" "$w" "count failed: $(tr '\n' ' ' <"$tmp/count.err")"
                status=1
            fi
        done
    done
    if [ -n "$goal11" ]; then
        echo "goal #11 (ctrio-uring: system calls per round trip on pingpong-100 < 1): $goal11"
    fi
fi

bench_stop "${running[@]}"
exit "$status"

