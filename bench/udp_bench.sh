#!/usr/bin/env bash
# The UDP echo-server benchmark (issue #10), run by bench/run.sh (make bench).
#
# Servers, each "NAME PORT [HOST]" printing "listening on HOST:PORT" first and
# exiting 0 on SIGTERM:
#   raw    bench/udp_raw_echo     the reference: epoll, recvmmsg/sendmmsg of
#                                 up to 64 per readiness
#   plain  bench/udp_plain_echo   the same with recvfrom/sendto
#   libuv  bench/uv_udp_echo      uv_udp with UV_UDP_RECVMMSG
#   go     bench/udp_go_echo/     Go net.UDPConn (built here with `go build`,
#                                 offline)
#   trio   bench/udp_trio_echo.py Trio (python3-trio)
#   ctrio  examples/udp_echo      run as "udp_echo server PORT HOST"
# A server that is missing is left out (and said so). The load generator,
# bench/udp_loadgen, checks every datagram and counts losses apart from the
# kernel's drops. Workloads: rr-1 and rr-64 (64-byte request/response, 1 and
# 64 flows, one request outstanding per flow: replies/s) and bulk-1200
# (1200-byte datagrams through the server, 64 unanswered: MB/s and
# datagrams/s arriving back at the load generator; see udp_loadgen.c for why
# through the echo server). As in echo_bench.sh and tls_bench.sh: each server
# pinned to CPU 1, the load generator to CPU 0; all servers run for the whole
# benchmark and take turns workload by workload, their order turning by one
# each round; the tables give the best of the rounds, the medians of the
# per-round (paired) ratios, the server CPU time (utime + stime from
# /proc/PID/stat, before and after each run) per reply and per MB, the load
# generator's per MB, the losses, the goals of issue #10, and the system
# calls of each server per datagram counted with perf after a warm-up. This
# VM is noisy (2 CPUs shared): read the paired medians, not one round.
#
# Environment: CTRIO_BUILD_DIR (default build), UDP_BENCH_SECONDS (2),
# UDP_BENCH_ROUNDS (3), UDP_BENCH_WORKLOADS, UDP_BENCH_SERVERS ("raw plain
# libuv go trio ctrio"), UDP_BENCH_CTRIO (the ctrio server command, default
# "$build/examples/udp_echo server"), UDP_BENCH_TRACER (perf or none; default
# perf when it works), UDP_BENCH_KEEP (non-empty: keep the temporary
# directory). Exit status 1 if a server failed a workload (a datagram
# corrupted, duplicated or misrouted) or did not exit cleanly on SIGTERM;
# losses are reported, not failures.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
bench_name="UDP benchmark"
bench_keep=${UDP_BENCH_KEEP:-}

build=${CTRIO_BUILD_DIR:-build}
seconds=${UDP_BENCH_SECONDS:-2}
rounds=${UDP_BENCH_ROUNDS:-3}
workloads=${UDP_BENCH_WORKLOADS:-rr-1 rr-64 bulk-1200}
want_servers=${UDP_BENCH_SERVERS:-raw plain libuv go trio ctrio}
loadgen=$build/bench/udp_loadgen
here=$(cd "$(dirname "$0")" && pwd)

# the command of each server, before "PORT HOST" (split on spaces)
declare -A cmd=(
    [raw]=$build/bench/udp_raw_echo
    [plain]=$build/bench/udp_plain_echo
    [libuv]=$build/bench/uv_udp_echo
    [go]=$build/bench/udp_go_echo
    [trio]="python3 $here/udp_trio_echo.py"
    [ctrio]=${UDP_BENCH_CTRIO:-$build/examples/udp_echo server}
)

if [ ! -x "$loadgen" ]; then
    echo "UDP benchmark: $loadgen not built; skipped"
    exit 0
fi

if [[ " $want_servers " == *" go "* ]]; then
    bench_go_build udp_go_echo || true
fi

# available SERVER: its command can run
available() {
    local first
    read -r first _ <<<"${cmd[$1]:-}"
    [ -n "$first" ] || return 1
    if [ "$1" = trio ]; then
        command -v python3 >/dev/null 2>&1 && python3 -c 'import trio' 2>/dev/null
    else
        [ -x "$first" ]
    fi
}

bench_pin
bench_setup

echo "UDP echo servers over loopback: $pinning; best of $rounds rounds of ${seconds} s per workload"
bench_loadavg before

for s in $want_servers; do
    if available "$s"; then
        read -r -a argv <<<"${cmd[$s]}"
        bench_start "$s" "${pin_srv[@]}" "${argv[@]}" 0 127.0.0.1 || status=1
    else
        echo "($s: ${cmd[$s]:-?} not built or not installed; left out)"
    fi
done

# ---- rates and CPU ---------------------------------------------------------
# shellcheck disable=SC2317 # called by bench_rounds
load_one() {
    bench_load "$1" "$2" "$3" us "${pin_lg[@]}" "$loadgen" -p "${port[$1]}" -d "$seconds" -l "$1" "$2"
}
bench_rounds load_one
bench_loadavg after
echo

# The tables: best of the rounds; paired medians; CPU per reply / MB (least
# of the rounds: the CPU a server needs, less noisy than its rate); losses.
awk -v workloads="$workloads" -v servers="${running[*]}" "$bench_awk"'
    $1 == "result" {
        parse()
        w = f["workload"]; s = f["server"]; k = ++cnt[w, s]; unit[w] = f["unit"]
        ok = f["errors"] + 0 == 0 && f["rate"] + 0 > 0
        rate[w, s, k] = ok ? f["rate"] + 0 : 0
        if (ok && (!((w, s) in best) || rate[w, s, k] > best[w, s])) {
            best[w, s] = rate[w, s, k]; bestdg[w, s] = f["dgram_rate"] + 0
        }
        have[w, s] = 1
        lost[w, s] += f["lost"]; late[w, s] += f["late"]; kd[w, s] += f["kdrops"]
        # server CPU per reply (rr) or per MB arriving back (bulk), the whole
        # run (warm-up and drain included) over everything it echoed
        per = f["unit"] == "MB/s" ? f["all_bytes"] / 1e6 : f["all_ops"]
        if (ok && per > 0) {
            c = f["cpu_us"] / per
            if (!((w, s) in cpu) || c < cpu[w, s]) cpu[w, s] = c
            c = f["lg_cpu_us"] / per
            if (!((w, s) in lgcpu) || c < lgcpu[w, s]) lgcpu[w, s] = c
        }
        busy[w, ++nb[w]] = f["lg_busy"] + 0
    }
    function cell(w, s) {
        if (!((w, s) in have)) return "-"
        return best[w, s] > 0 ? sprintf("%.0f", best[w, s]) : "FAIL"
    }
    function dgcell(w, s) {
        if (!((w, s) in have)) return "-"
        return best[w, s] > 0 ? sprintf("%.0f", bestdg[w, s]) : "FAIL"
    }
    # pmed (bench/lib.sh): the paired median of the rates
    function paired(w, a, b,   m) {
        m = pmed(w, a, b)
        return m ? sprintf("%6.3f %2d/%-2d", PM, PA, m) : "-"
    }
    function cpuratio(arr, w) {
        return (w, "ctrio") in arr && arr[w, "raw"] > 0 ? sprintf("%.2f", arr[w, "ctrio"] / arr[w, "raw"]) : "-"
    }
    function cpucell(arr, w, s) { return (w, s) in arr ? sprintf("%.2f", arr[w, s]) : "-" }
    BEGIN {
        nw = split(workloads, W, " ")
        ns = split("raw plain libuv go trio ctrio", S, " ")
    }
    END {
        printf "%-10s %-6s", "workload", "unit"
        for (j = 1; j <= ns; j++) printf " %9s", S[j]
        printf "\n"
        for (i = 1; i <= nw; i++) {
            w = W[i]
            printf "%-10s %-6s", w, unit[w]
            for (j = 1; j <= ns; j++) printf " %9s", cell(w, S[j])
            printf "\n"
            if (unit[w] == "MB/s") {
                printf "%-10s %-6s", w, "dg/s"
                for (j = 1; j <= ns; j++) printf " %9s", dgcell(w, S[j])
                printf "\n"
            }
        }
        print ""
        print "per round (paired): median of the ratios ctrio/peer, and in how many rounds ctrio was ahead;"
        print "load generator busy: its CPU share while it ran (median; near 1.00 the client bounds the rate)"
        printf "%-10s", "workload"
        for (j = 1; j < ns; j++) printf " %14s", "ctrio/" S[j]
        printf " %8s\n", "lg busy"
        for (i = 1; i <= nw; i++) {
            w = W[i]
            printf "%-10s", w
            for (j = 1; j < ns; j++) printf " %14s", paired(w, "ctrio", S[j])
            printf " %8s\n", busymed(w)
        }
        print ""
        print "CPU time (utime + stime), us per reply (rr) or per MB arriving back (bulk), least of the rounds:"
        printf "%-10s %-10s", "workload", "side"
        for (j = 1; j <= ns; j++) printf " %9s", S[j]
        printf " %10s\n", "ctrio/raw"
        for (i = 1; i <= nw; i++) {
            w = W[i]
            for (side = 1; side <= 2; side++) {
                if (side == 2 && unit[w] != "MB/s") continue
                printf "%-10s %-10s", w, side == 1 ? "server" : "loadgen"
                for (j = 1; j <= ns; j++)
                    printf " %9s", side == 1 ? cpucell(cpu, w, S[j]) : cpucell(lgcpu, w, S[j])
                if (side == 1) printf " %10s\n", cpuratio(cpu, w)
                else printf " %10s\n", cpuratio(lgcpu, w)
            }
        }
        print ""
        print "datagrams lost (no reply within 0.2 s) over all rounds / kernel UDP drops meanwhile"
        print "(InErrors + SndbufErrors, whole machine) / replies that came late:"
        printf "%-10s", "workload"
        for (j = 1; j <= ns; j++) printf " %12s", S[j]
        printf "\n"
        for (i = 1; i <= nw; i++) {
            w = W[i]
            printf "%-10s", w
            for (j = 1; j <= ns; j++)
                printf " %12s", (w, S[j]) in have ? sprintf("%d/%d/%d", lost[w, S[j]], kd[w, S[j]], late[w, S[j]]) : "-"
            printf "\n"
        }
        print ""
        # issue #10, request/response: ctrio >= 1.0x the batched reference in
        # rate (paired medians), <= 1.0x its server CPU per reply, >= 3x Trio
        has_ct = index(" " servers " ", " ctrio ") > 0
        has_tr = index(" " servers " ", " trio ") > 0
        for (i = 1; i <= nw; i++) {
            w = W[i]
            if (w !~ /^rr-/) continue
            goal = "ctrio >= 1.0x raw in rate, <= 1.0x its CPU per reply, >= 3x trio"
            if (!has_ct) { printf "goal %-6s (%s): not measured (no ctrio server)\n", w, goal; continue }
            nr = pmed(w, "ctrio", "raw"); rr = PM
            nt = has_tr ? pmed(w, "ctrio", "trio") : 0; rt = PM
            if (nr == 0 || !((w, "ctrio") in cpu) || !((w, "raw") in cpu)) {
                printf "goal %-6s (%s): not measured (no clean paired round)\n", w, goal
                continue
            }
            cr = cpu[w, "ctrio"] / cpu[w, "raw"]
            met = rr >= 1.0 && cr <= 1.0 && (!has_tr || (nt > 0 && rt >= 3))
            tr = "; trio not run, its part unchecked"
            if (has_tr) tr = nt ? sprintf("; %.2fx trio", rt) : "; trio: no clean round"
            printf "goal %-6s (%s): %s (rate %.2fx raw, paired median of %d; CPU per reply %.2fx raw%s)\n",
                   w, goal, met ? "met" : "not met", rr, nr, cr, tr
        }
        printf "goal bulk (UDP_SEGMENT send >= 2x without, UDP_GRO receive >= 1.5x without): not measured here;\n"
        printf "  bench/udp_offload_bench.sh measures it (examples/udp_bulk, one way, with and without)\n"
    }' "$results"

# ---- system calls per datagram ---------------------------------------------
tracer=$(bench_tracer "${UDP_BENCH_TRACER:-}" raw_syscalls:sys_enter)

# count_syscalls SERVER WORKLOAD N: "calls epoll reads writes" per datagram
# echoed, for N datagrams after a warm-up
count_syscalls() {
    local s=$1 w=$2 n=$3 ev
    ev=$(bench_events raw_syscalls:sys_enter epoll_wait epoll_pwait epoll_pwait2 epoll_ctl read recvfrom \
        recvmsg recvmmsg write sendto sendmsg sendmmsg)
    bench_count "$s" "$ev" 1200 "${pin_lg[@]}" "$loadgen" -p "${port[$s]}" -n "$n" -g "$tmp/go" -l "$s" \
        "$w" || return 1
    awk -F, -v n="$n" "$bench_awk"'
        { syscount() }
        END {
            printf "%.2f %.2f %.2f %.2f %.2f\n", sc[""] / n, calls("epoll_wait epoll_pwait epoll_pwait2") / n,
                calls("read recvfrom recvmsg recvmmsg") / n, calls("write sendto sendmsg sendmmsg") / n,
                sc["epoll_ctl"] / n
        }' "$tmp/trace.log"
}

echo
if [ "$tracer" = none ]; then
    echo "system calls: not counted (perf unavailable or UDP_BENCH_TRACER=none)"
else
    echo "system calls of the server per datagram echoed, warmed up (perf; rr-1: 20000 datagrams,"
    echo "rr-64 and bulk-1200: 100000; all system calls, and of them epoll waits, receives, sends, epoll_ctl)"
    printf "%-7s %-10s %8s %8s %8s %8s %9s\n" server workload calls epoll recv send epoll_ctl
    declare -A calls_of
    for s in "${running[@]}"; do
        for spec in rr-1:20000 rr-64:100000 bulk-1200:100000; do
            IFS=: read -r w n <<<"$spec"
            [[ " $workloads " == *" $w "* ]] || continue
            if c=$(count_syscalls "$s" "$w" "$n"); then
                read -r calls ep rd wr ctl <<<"$c"
                calls_of[$s, $w]=$calls
                printf "%-7s %-10s %8s %8s %8s %8s %9s\n" "$s" "$w" "$calls" "$ep" "$rd" "$wr" "$ctl"
            else
                printf "%-7s %-10s %s\n" "$s" "$w" "count failed: $(tr '\n' ' ' <"$tmp/count.err")"
                status=1
            fi
        done
    done
    # issue #10: <= 3 system calls per datagram at one flow, <= 0.2 at 64
    for spec in rr-1:3 rr-64:0.2; do
        IFS=: read -r w lim <<<"$spec"
        v=${calls_of[ctrio, $w]:-}
        if [ -z "$v" ]; then
            echo "goal $w system calls (ctrio <= $lim per datagram): not measured"
        else
            awk -v w="$w" -v v="$v" -v lim="$lim" -v raw="${calls_of[raw, $w]:-}" 'BEGIN {
                printf "goal %s system calls (ctrio <= %s per datagram): %s (%.2f%s)\n", w, lim,
                       v + 0 <= lim + 0 ? "met" : "not met", v, raw == "" ? "" : sprintf("; raw %.2f", raw)
            }'
        fi
    done
fi

bench_stop "${running[@]}"
exit "$status"
