#!/usr/bin/env bash
# The TLS echo-server benchmark (issue #9), run by bench/run.sh (make bench).
#
# Servers, each "NAME PORT CERT_PEM KEY_PEM [HOST]" printing "listening on
# HOST:PORT" first and exiting 0 on SIGTERM:
#   raw    bench/tls_raw_echo       the reference: epoll + OpenSSL socket BIOs
#   go     bench/tls_go_echo/       Go crypto/tls, a goroutine per connection
#                                   (built here with `go build`, offline)
#   ctrio  examples/tls_echo_server ctrio's TLS streams
# A server whose binary is missing is left out (and said so). The load
# generator, bench/tls_loadgen, verifies the chain of a throwaway ECDSA P-256
# CA and server certificate made here with the openssl CLI. Workloads:
# bulk-16k-1 and bulk-16k-8 (16 KiB records, MB/s echoed) and hs-50 (50
# clients each doing connect, full TLS handshake, a 64-byte echo, close;
# handshakes/s). As in echo_bench.sh: each server pinned to CPU 1, the load
# generator to CPU 0; all servers run for the whole benchmark and take turns
# workload by workload, their order turning by one each round; the tables
# give the best of the rounds, the medians of the per-round (paired) ratios,
# the server CPU time (utime + stime from /proc/PID/stat, before and after
# each run) per MB echoed and per handshake, the goals of issue #9, and the
# system calls per MB and per handshake counted with perf after a warm-up.
#
# Environment: CTRIO_BUILD_DIR (default build), TLS_BENCH_SECONDS (2),
# TLS_BENCH_ROUNDS (3), TLS_BENCH_WORKLOADS, TLS_BENCH_SERVERS ("raw go
# ctrio"), TLS_BENCH_CTRIO (the ctrio server binary), TLS_BENCH_TRACER (perf
# or none; default perf when it works), TLS_BENCH_KEEP (non-empty: keep the
# temporary directory). Exit status 1 if a server failed a workload or did
# not exit cleanly on SIGTERM.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
bench_name="TLS benchmark"
bench_keep=${TLS_BENCH_KEEP:-}

build=${CTRIO_BUILD_DIR:-build}
seconds=${TLS_BENCH_SECONDS:-2}
rounds=${TLS_BENCH_ROUNDS:-3}
workloads=${TLS_BENCH_WORKLOADS:-bulk-16k-1 bulk-16k-8 hs-50}
want_servers=${TLS_BENCH_SERVERS:-raw go ctrio}
loadgen=$build/bench/tls_loadgen

declare -A bin=(
    [raw]=$build/bench/tls_raw_echo
    [go]=$build/bench/tls_go_echo
    [ctrio]=${TLS_BENCH_CTRIO:-$build/examples/tls_echo_server}
)

if [ ! -x "$loadgen" ] || ! command -v openssl >/dev/null 2>&1; then
    echo "TLS benchmark: $loadgen not built (OpenSSL 3 missing?) or no openssl CLI; skipped"
    exit 0
fi

if [[ " $want_servers " == *" go "* ]]; then
    bench_go_build tls_go_echo || true
fi

bench_pin
bench_tw_reuse
bench_setup

# A throwaway CA and a server certificate for 127.0.0.1, both ECDSA P-256.
make_certs() {
    local d=$tmp/pki
    mkdir -p "$d"
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$d/ca.key" -out "$d/ca.pem" -days 2 -subj "/CN=ctrio bench CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$d/key.pem" -out "$d/server.csr" -subj "/CN=localhost"
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" >"$d/ext.cnf"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
        -CAcreateserial -out "$d/cert.pem" -days 2 -extfile "$d/ext.cnf"
}
if ! make_certs >"$tmp/pki.log" 2>&1; then
    echo "TLS benchmark: could not make certificates with the openssl CLI:" >&2
    cat "$tmp/pki.log" >&2
    exit 1
fi
ca=$tmp/pki/ca.pem

echo "TLS echo servers over loopback: $pinning; best of $rounds rounds of ${seconds} s per workload"
echo "certificates: throwaway ECDSA P-256 CA and server certificate; the client verifies the chain"
bench_loadavg before

for s in $want_servers; do
    if [ -x "${bin[$s]:-}" ]; then
        bench_start "$s" "${pin_srv[@]}" "${bin[$s]}" 0 "$tmp/pki/cert.pem" "$tmp/pki/key.pem" \
            127.0.0.1 || status=1
    else
        echo "($s: ${bin[$s]:-?} not built; left out)"
    fi
done

# ---- rates and CPU ---------------------------------------------------------
# shellcheck disable=SC2317 # called by bench_rounds
load_one() {
    bench_load "$1" "$2" "$3" us "${pin_lg[@]}" "$loadgen" "${lg_opts[@]}" -p "${port[$1]}" -C "$ca" \
        -d "$seconds" -l "$1" "$2"
}
bench_rounds load_one
bench_loadavg after
echo

# what each server negotiated (the first result line of each)
awk '$1 == "result" {
        s = $2; sub(/server=/, "", s)
        if (!(s in seen)) { seen[s] = 1; printf "negotiated with %-6s %s %s %s\n", s, $(NF-3), $(NF-2), $(NF-1) }
    }' "$results"
echo

# The tables: best of the rounds; paired medians; CPU per MB / handshake
# (least of the rounds: the CPU a server needs, less noisy than its rate).
awk -v workloads="$workloads" -v servers="${running[*]}" "$bench_awk"'
    $1 == "result" {
        parse()
        w = f["workload"]; s = f["server"]; k = ++cnt[w, s]; unit[w] = f["unit"]
        ok = f["errors"] + 0 == 0 && f["rate"] + 0 > 0
        rate[w, s, k] = ok ? f["rate"] + 0 : 0
        if (ok && !((w, s) in best) || rate[w, s, k] > best[w, s]) best[w, s] = rate[w, s, k]
        have[w, s] = 1
        # CPU per MB echoed (bulk) or per handshake (hs), warm-up and drain included
        per = f["unit"] == "MB/s" ? f["all_bytes"] / 1e6 : f["all_ops"]
        if (ok && per > 0) {
            c = f["cpu_us"] / per
            if (!((w, s) in cpu) || c < cpu[w, s]) cpu[w, s] = c
        }
        busy[w, ++nb[w]] = f["lg_busy"] + 0
    }
    function cell(w, s) {
        if (!((w, s) in have)) return "-"
        return best[w, s] > 0 ? sprintf("%.0f", best[w, s]) : "FAIL"
    }
    function ratio(x, y) { return x > 0 && y > 0 ? sprintf("%.2f", x / y) : "-" }
    # pmed (bench/lib.sh): the paired median of the rates
    function paired(w, a, b,   m) {
        m = pmed(w, a, b)
        return m ? sprintf("%6.3f %2d/%-2d", PM, PA, m) : "-"
    }
    function cpucell(w, s) { return (w, s) in cpu ? sprintf("%.0f", cpu[w, s]) : "-" }
    function cpuratio(w, a, b) { return (w, a) in cpu && (w, b) in cpu ? ratio(cpu[w, a], cpu[w, b]) : "-" }
    BEGIN { nw = split(workloads, W, " ") }
    END {
        has_go = index(" " servers " ", " go ") > 0
        has_ct = index(" " servers " ", " ctrio ") > 0
        printf "%-12s %-5s %8s %8s %8s %10s %9s %8s\n", "workload", "unit", "raw", "go", "ctrio",
               "ctrio/raw", "ctrio/go", "raw/go"
        for (i = 1; i <= nw; i++) {
            w = W[i]
            printf "%-12s %-5s %8s %8s %8s %10s %9s %8s\n", w, unit[w], cell(w, "raw"), cell(w, "go"),
                   cell(w, "ctrio"), ratio(best[w, "ctrio"], best[w, "raw"]),
                   ratio(best[w, "ctrio"], best[w, "go"]), ratio(best[w, "raw"], best[w, "go"])
        }
        print ""
        print "per round (paired): median of the ratios, and in how many rounds the first was ahead;"
        print "load generator busy: its CPU share while it ran (median; near 1.00 the client bounds the rate)"
        printf "%-12s %14s %14s %14s %8s\n", "workload", "ctrio/raw", "ctrio/go", "raw/go", "lg busy"
        for (i = 1; i <= nw; i++) {
            w = W[i]
            printf "%-12s %14s %14s %14s %8s\n", w, paired(w, "ctrio", "raw"), paired(w, "ctrio", "go"),
                   paired(w, "raw", "go"), busymed(w)
        }
        print ""
        print "server CPU time (utime + stime), us per MB echoed or per handshake (least of the rounds):"
        printf "%-12s %-5s %8s %8s %8s %10s %9s %8s\n", "workload", "per", "raw", "go", "ctrio",
               "ctrio/raw", "ctrio/go", "raw/go"
        for (i = 1; i <= nw; i++) {
            w = W[i]
            printf "%-12s %-5s %8s %8s %8s %10s %9s %8s\n", w, unit[w] == "MB/s" ? "MB" : "hs",
                   cpucell(w, "raw"), cpucell(w, "go"), cpucell(w, "ctrio"), cpuratio(w, "ctrio", "raw"),
                   cpuratio(w, "ctrio", "go"), cpuratio(w, "raw", "go")
        }
        print ""
        # issue #9: bulk >= 0.95x raw and >= 1.2x Go; handshakes >= 0.95x raw
        for (i = 1; i <= nw; i++) {
            w = W[i]
            bulk = unit[w] == "MB/s"
            goal = bulk ? "ctrio >= 0.95x raw and >= 1.2x go" : "ctrio >= 0.95x raw"
            if (!has_ct) { printf "goal %-11s (%s): not measured (no ctrio server)\n", w, goal; continue }
            nr = pmed(w, "ctrio", "raw"); rr = PM
            ng = bulk && has_go ? pmed(w, "ctrio", "go") : 0; rg = PM
            if (nr == 0 || (bulk && has_go && ng == 0)) {
                printf "goal %-11s (%s): not measured (no clean paired round)\n", w, goal
                continue
            }
            met = rr >= 0.95 && (!bulk || !has_go || rg >= 1.2)
            printf "goal %-11s (%s): %s (paired medians: %.2fx raw%s)%s\n", w, goal,
                   met ? "met" : "not met", rr, bulk && has_go ? sprintf(", %.2fx go", rg) : "",
                   bulk && !has_go ? "; go not run, its half unchecked" : ""
        }
    }' "$results"

# ---- system calls per MB and per handshake ---------------------------------
tracer=$(bench_tracer "${TLS_BENCH_TRACER:-}" raw_syscalls:sys_enter)

# count_syscalls SERVER WORKLOAD N: "calls reads writes epoll" per op
# (16 KiB block or handshake) for N ops after a warm-up
count_syscalls() {
    local s=$1 w=$2 n=$3 ev
    ev=$(bench_events raw_syscalls:sys_enter epoll_wait epoll_pwait epoll_pwait2 epoll_ctl read readv \
        recvfrom recvmsg write writev sendto sendmsg)
    bench_count "$s" "$ev" 1200 "${pin_lg[@]}" "$loadgen" "${lg_opts[@]}" -p "${port[$s]}" -C "$ca" \
        -n "$n" -g "$tmp/go" -l "$s" "$w" || return 1
    awk -F, -v n="$n" "$bench_awk"'
        { syscount() }
        END {
            printf "%.2f %.2f %.2f %.2f\n", sc[""] / n, calls("read readv recvfrom recvmsg") / n,
                calls("write writev sendto sendmsg") / n,
                calls("epoll_wait epoll_pwait epoll_pwait2 epoll_ctl") / n
        }' "$tmp/trace.log"
}

echo
if [ "$tracer" = none ]; then
    echo "system calls: not counted (perf unavailable or TLS_BENCH_TRACER=none)"
else
    # 6104 blocks of 16 KiB = 100.01 MB; per MB = per block x 61.04
    echo "system calls of the server, warmed up (perf): per MB echoed (bulk-16k-1, 6104 x 16 KiB)"
    echo "and per handshake (hs-50, 2000 handshakes, each with its echo and close)"
    printf "%-8s %-11s %-5s %8s %8s %8s %8s\n" server workload per calls reads writes epoll
    for s in "${running[@]}"; do
        for spec in bulk-16k-1:6104:MB hs-50:2000:hs; do
            IFS=: read -r w n per <<<"$spec"
            if c=$(count_syscalls "$s" "$w" "$n"); then
                read -r calls rd wr ep <<<"$c"
                if [ "$per" = MB ]; then
                    read -r calls rd wr ep < <(awk -v a="$calls" -v b="$rd" -v c="$wr" -v d="$ep" \
                        'BEGIN { m = 1e6 / 16384; printf "%.1f %.1f %.1f %.1f\n", a * m, b * m, c * m, d * m }')
                fi
                printf "%-8s %-11s %-5s %8s %8s %8s %8s\n" "$s" "$w" "$per" "$calls" "$rd" "$wr" "$ep"
            else
                printf "%-8s %-11s %s\n" "$s" "$w" "count failed: $(tr '\n' ' ' <"$tmp/count.err")"
                status=1
            fi
        done
    done
fi

bench_stop "${running[@]}"
exit "$status"
