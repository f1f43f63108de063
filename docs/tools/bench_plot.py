#!/usr/bin/env python3
"""bench_plot.py BENCH_OUTPUT STAGE_DIR -- the benchmarks page's figures and
tables, drawn from what `make bench` printed (never typed in by hand).

`make bench` keeps its output in build/bench-output.txt (the Makefile tees
it there). From the echo servers' part (bench/echo_bench.sh's tables) this
draws STAGE_DIR/_generated/echo_bench.png: throughput of each server
relative to the first one (the hand-written epoll server, "raw"), and p99
latency, per workload, as bars; it writes STAGE_DIR/_generated/bench.rst
with those tables and the whole output. With no output file, the page says
how to make one. Exit 77 when matplotlib is missing (Debian: python3-matplotlib).
"""
import os
import re
import sys


def section(text, title):
    """The lines of make bench's part that starts with the line `title`."""
    lines = text.split("\n")
    try:
        i = lines.index(title)
    except ValueError:
        return []
    out = []
    for ln in lines[i + 1:]:
        if re.match(r"^[A-Za-z].*\((bench/[\w.]+)\)$", ln):  # the next part's title
            break
        out.append(ln)
    return out


def table(lines, first):
    """The rows of the table whose head starts with `first`: (head, rows)."""
    for k, ln in enumerate(lines):
        if ln.startswith(first):
            rows = []
            for r in lines[k + 1:]:
                if not r.strip():
                    break
                rows.append(r.split())
            return ln.split(), rows
    return None, []


def parse_echo(lines):
    """{workload: {server: (rate, unit, p50, p99)}} and the servers in order."""
    head, rows = table(lines, "workload ")
    if not head:
        return {}, []
    servers = [h for h in head[2:] if "/" not in h]
    data = {}
    for r in rows:
        w, unit, vals = r[0], r[1], r[2:2 + len(servers)]
        data[w] = {s: [float(v) if re.match(r"^[\d.]+$", v) else 0.0, unit, 0.0, 0.0]
                   for s, v in zip(servers, vals)}
    lhead, lrows = table(lines, "latency us")
    for r in lrows:
        for s, cell in zip(servers, r[1:]):
            m = re.match(r"^([\d.]+)/([\d.]+)$", cell)
            if m and r[0] in data and s in data[r[0]]:
                data[r[0]][s][2:] = [float(m.group(1)), float(m.group(2))]
    return data, servers


def plot(data, servers, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    workloads = list(data)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / max(1, len(servers))
    base = servers[0]
    for j, s in enumerate(servers):
        xs = [i + (j - (len(servers) - 1) / 2) * width for i in range(len(workloads))]
        rel = [data[w][s][0] / data[w][base][0] if data[w][base][0] > 0 else 0 for w in workloads]
        p99 = [data[w][s][3] for w in workloads]
        ax1.bar(xs, rel, width, label=s)
        ax2.bar(xs, p99, width, label=s)
    for ax in (ax1, ax2):
        ax.set_xticks(range(len(workloads)))
        ax.set_xticklabels(workloads, rotation=20, ha="right")
        ax.grid(axis="y", alpha=0.3)
    ax1.axhline(1.0, color="black", linewidth=0.8)
    ax1.set_ylabel(f"throughput relative to {base}")
    ax1.set_title("Throughput (higher is better)")
    ax2.set_yscale("log")
    ax2.set_ylabel("p99 latency, µs (log)")
    ax2.set_title("p99 latency (lower is better)")
    ax1.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def rst_table(head, rows):
    out = [".. list-table::", "   :header-rows: 1", ""]
    for r in [head] + rows:
        out.append("   * - " + r[0])
        out += ["     - " + c for c in r[1:]]
    return out + [""]


def write(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main():
    src, stage = sys.argv[1], sys.argv[2]
    gen = os.path.join(stage, "_generated")
    os.makedirs(gen, exist_ok=True)
    out = os.path.join(gen, "bench.rst")
    if not os.path.exists(src):
        write(out, ["No benchmark output was found when this site was built "
                    f"(``{os.path.basename(src)}``). Run ``make bench``, then "
                    "``make docs``: the tables and the plot are drawn from what it prints."])
        return 0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("bench_plot.py: matplotlib is missing (Debian: python3-matplotlib)")
        return 77
    text = open(src, encoding="utf-8", errors="replace").read()
    echo = section(text, "echo servers (bench/echo_bench.sh)")
    data, servers = parse_echo(echo)
    lines = []
    if data:
        plot(data, servers, os.path.join(gen, "echo_bench.png"))
        lines += ["Echo servers over loopback (``bench/echo_bench.sh``)",
                  "-----------------------------------------------------", "",
                  ".. figure:: /_generated/echo_bench.png", "   :alt: echo server benchmark",
                  "", "   Drawn by ``docs/tools/bench_plot.py`` from ``make bench``'s output.", ""]
        head = ["workload", "unit"] + servers
        lines += ["Throughput:", ""]
        lines += rst_table(head, [[w, data[w][servers[0]][1]] +
                                  ["%g" % data[w][s][0] for s in servers] for w in data])
        lines += ["Latency, µs (p50 / p99):", ""]
        lines += rst_table(["workload"] + servers,
                           [[w] + ["%g / %g" % (data[w][s][2], data[w][s][3]) for s in servers]
                            for w in data])
    else:
        lines += ["(``make bench``'s output has no echo server tables.)", ""]
    lines += ["Everything ``make bench`` printed", "----------------------------------", "",
              ".. code-block:: none", ""]
    lines += ["   " + ln for ln in text.rstrip().split("\n")]
    write(out, lines)
    print(f"bench_plot.py: {len(data)} workloads x {len(servers)} servers from {src}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
