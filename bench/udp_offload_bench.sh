#!/usr/bin/env bash
# The UDP bulk offload benchmark (issue #10's bulk goals), run by bench/run.sh
# (make bench) after udp_bench.sh.
#
# examples/udp_bulk sends 1200-byte datagrams one way over loopback for
# SECONDS, and its receiver checks every one and measures "at the receiver":
# datagrams/s and MB/s from its first datagram to its last, its CPU time
# (getrusage) per MB received, what was lost (sent, by the end marker's
# count, minus arrived) and the kernel's receive-buffer drops beside
# (RcvbufErrors, whole machine; the kernel counts packets, and a segmented
# send kept whole for a UDP_GRO receiver is one packet of 54 datagrams). The
# sender's own line gives its CPU per MB sent. dg/receive: datagrams per
# receive call (more than 1 only where UDP_GRO coalesced them). Sender pinned to CPU 0,
# receiver to CPU 1 (on loopback the sender's CPU also runs the delivery into
# the receiver's socket: a softirq on the sending CPU).
#
# Two comparisons, each a pair of runs per round:
#   send: sender without and with UDP_SEGMENT (--gso), the same receiver
#         (without UDP_GRO). Goal: >= 2x the datagrams/s at the receiver.
#   recv: receiver without and with UDP_GRO (--gro), the same sender (with
#         UDP_SEGMENT, so that the receiver is the bottleneck). Goal: >= 1.5x.
# Each round runs both pairs; the order inside a pair alternates round by
# round (the offload first in even rounds). The tables give the median of the
# rounds for each configuration and the median of the per-round (paired)
# ratios offload/without, with the rounds where the offload was ahead. This
# VM is noisy (2 CPUs shared): read the paired medians.
#
# Environment: CTRIO_BUILD_DIR (default build), UDP_OFFLOAD_SECONDS (2),
# UDP_OFFLOAD_ROUNDS (5), UDP_OFFLOAD_SIZE (1200), UDP_OFFLOAD_KEEP (non-empty:
# keep the temporary directory). Exit status 1 if a run failed (a datagram
# corrupted or duplicated, a side's error); losses are reported, not failures.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
bench_name="UDP offload benchmark"
bench_keep=${UDP_OFFLOAD_KEEP:-}

build=${CTRIO_BUILD_DIR:-build}
seconds=${UDP_OFFLOAD_SECONDS:-2}
rounds=${UDP_OFFLOAD_ROUNDS:-5}
size=${UDP_OFFLOAD_SIZE:-1200}
bulk=$build/examples/udp_bulk

if [ ! -x "$bulk" ]; then
    echo "UDP offload benchmark: $bulk not built; skipped"
    exit 0
fi

# the receiver in the server's place (CPU 1), the sender in the load generator's
bench_pin "sender on CPU 0, receiver on CPU 1"

# (the receiver's pid in pid[recv], killed at exit if still running)
bench_setup

# one ROUND PAIR SENDER_MODE RECEIVER_MODE: one run, its two lines joined
# into one of $tmp/results (the sender's keys prefixed with s_)
one() {
    local r=$1 pair=$2 smode=$3 rmode=$4 sargs=() rargs=() port src=0 rrc=0 i
    [ "$smode" = gso ] && sargs+=(--gso)
    [ "$rmode" = gro ] && rargs+=(--gro)
    # (removed first: the redirection truncates in the child, asynchronously,
    # and the last run's "listening on" would give a closed port)
    rm -f "$tmp/recv.out" "$tmp/send.out"
    # (the receiver's own limit: the run, its end marker, and slack)
    "${pin_srv[@]}" "$bulk" recv "${rargs[@]}" -d "$((${seconds%.*} + 10))" 0 127.0.0.1 \
        >"$tmp/recv.out" 2>"$tmp/recv.err" &
    pid[recv]=$!
    if ! wait_for "$tmp/recv.out" '^listening on ' 50; then
        echo "UDP offload benchmark: the receiver did not start: $(tr '\n' ' ' <"$tmp/recv.err")" >&2
        status=1
        kill -KILL "${pid[recv]}" 2>/dev/null || true
        wait "${pid[recv]}" 2>/dev/null || true
        unset "pid[recv]"
        return
    fi
    port=$(sed -n '1s/.*:\([0-9][0-9]*\)$/\1/p' "$tmp/recv.out")
    "${pin_lg[@]}" "$bulk" send "${sargs[@]}" -s "$size" -d "$seconds" 127.0.0.1 "$port" \
        >"$tmp/send.out" 2>"$tmp/send.err" || src=$?
    # the receiver stops at the end marker, or 1 s after its last datagram
    for ((i = 0; i < 300; i++)); do
        kill -0 "${pid[recv]}" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "${pid[recv]}" 2>/dev/null && kill -KILL "${pid[recv]}" 2>/dev/null
    wait "${pid[recv]}" 2>/dev/null || rrc=$?
    unset "pid[recv]"
    if [ "$src" -ne 0 ] || [ "$rrc" -ne 0 ]; then
        echo "UDP offload benchmark: $pair $smode->$rmode (round $r) failed: sender $src," \
            "receiver $rrc: $(cat "$tmp/send.err" "$tmp/recv.err" | tr '\n' ' ')" >&2
        status=1
    fi
    echo "run round=$r pair=$pair smode=$smode rmode=$rmode ok=$((src == 0 && rrc == 0))" \
        "$(grep '^recv ' "$tmp/recv.out" | cut -d' ' -f2-)" \
        "$(grep '^send ' "$tmp/send.out" | cut -d' ' -f2- | sed 's/\([a-z_]*\)=/s_\1=/g')" \
        >>"$tmp/results"
}

echo "UDP bulk offload over loopback (examples/udp_bulk, $size-byte datagrams): $pinning;"
echo "$rounds rounds of ${seconds} s per run, the order inside each pair alternating"
bench_loadavg before
for ((r = 1; r <= rounds; r++)); do
    if ((r % 2)); then
        one "$r" send plain plain
        one "$r" send gso plain
        one "$r" recv gso plain
        one "$r" recv gso gro
    else
        one "$r" send gso plain
        one "$r" send plain plain
        one "$r" recv gso gro
        one "$r" recv gso plain
    fi
done
bench_loadavg after
echo

awk -v rounds="$rounds" "$bench_awk"'
    # the median over the clean rounds of key k of configuration c
    function cmed(c, k,   i, n, arr) {
        n = 0
        for (i = 1; i <= rounds; i++) if ((c, i) in good) arr[++n] = v[c, i, k]
        return n ? median(arr, n) : -1
    }
    # kmed, paired: the median over rounds where both ran clean of k(a) / k(b);
    # sets AHEAD (rounds a ahead) and N
    function kmed(a, b, k,   i, arr) {
        N = 0; AHEAD = 0
        for (i = 1; i <= rounds; i++) {
            if (!((a, i) in good) || !((b, i) in good) || v[b, i, k] <= 0) continue
            arr[++N] = v[a, i, k] / v[b, i, k]; AHEAD += v[a, i, k] > v[b, i, k]
        }
        return N ? median(arr, N) : -1
    }
    function num(x, fmt) { return x < 0 ? "-" : sprintf(fmt, x) }
    $1 == "run" {
        parse()
        c = f["pair"] "/" f["smode"] "/" f["rmode"]; r = f["round"]
        for (k in f) v[c, r, k] = f[k]
        v[c, r, "per_recv"] = f["receives"] > 0 ? f["dgrams"] / f["receives"] : 0
        if (f["ok"] == 1 && f["dgram_rate"] > 0) good[c, r] = 1
        lost[c] += f["lost"]; sent[c] += f["sent"]; kd[c] += f["kdrops"]; runs[c]++
    }
    END {
        nc = split("send/plain/plain send/gso/plain recv/gso/plain recv/gso/gro", C, " ")
        print "median of the rounds; CPU time (utime + stime) per MB: the sender per MB sent, the receiver per MB received"
        printf "%-5s %-7s %-8s %10s %8s %10s %10s %12s %10s %14s\n", "pair", "sender", "receiver",
               "dg/s recv", "MB/s", "dg/s sent", "snd us/MB", "rcv us/MB", "dg/receive", "lost/sent/kdrops"
        for (j = 1; j <= nc; j++) {
            c = C[j]; split(c, p, "/")
            printf "%-5s %-7s %-8s %10s %8s %10s %10s %12s %10s %14s\n", p[1], p[2], p[3],
                   num(cmed(c, "dgram_rate"), "%.0f"), num(cmed(c, "mb_rate"), "%.1f"),
                   num(cmed(c, "s_dgram_rate"), "%.0f"), num(cmed(c, "s_cpu_us_per_mb"), "%.0f"),
                   num(cmed(c, "cpu_us_per_mb"), "%.0f"), num(cmed(c, "per_recv"), "%.1f"),
                   runs[c] ? sprintf("%d/%d/%d", lost[c], sent[c], kd[c]) : "-"
        }
        print ""
        print "paired medians of the per-round ratios offload/without (rounds the offload was ahead / clean pairs):"
        printf "%-24s %16s %16s %16s\n", "", "dg/s at receiver", "sender us/MB", "receiver us/MB"
        for (j = 1; j <= 2; j++) {
            a = j == 1 ? "send/gso/plain" : "recv/gso/gro"
            b = j == 1 ? "send/plain/plain" : "recv/gso/plain"
            name = j == 1 ? "UDP_SEGMENT / plain send" : "UDP_GRO / plain receive"
            rate[j] = kmed(a, b, "dgram_rate"); nr[j] = N; ah[j] = AHEAD
            scpu = kmed(a, b, "s_cpu_us_per_mb"); rcpu = kmed(a, b, "cpu_us_per_mb")
            printf "%-24s %16s %16s %16s\n", name,
                   (rate[j] < 0 ? "-" : sprintf("%.2f %d/%d", rate[j], ah[j], nr[j])),
                   num(scpu, "%.2f"), num(rcpu, "%.2f")
        }
        print ""
        for (j = 1; j <= 2; j++) {
            goal = j == 1 ? "bulk send (UDP_SEGMENT >= 2x without, datagrams/s at the receiver, same CPUs)" \
                          : "bulk receive (UDP_GRO >= 1.5x without, datagrams/s at the receiver, same CPUs)"
            lim = j == 1 ? 2 : 1.5
            if (rate[j] < 0) printf "goal %s: not measured (no clean pair)\n", goal
            else printf "goal %s: %s (%.2fx, paired median of %d)\n", goal, (rate[j] >= lim ? "met" : "not met"), rate[j], nr[j]
        }
    }' "$tmp/results"
exit "$status"
