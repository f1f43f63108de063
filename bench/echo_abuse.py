#!/usr/bin/env python3
"""echo_abuse.py -- connections that misbehave against an echo server of the
echo benchmark (bench/echo_bench.sh): each round opens 20 connections, floods
them with 64 KiB writes for 0.1 s without reading an echo, then drops them
three ways (reset, half close then close, plain close) with data unread on
both sides. Afterwards the server must hold no descriptor more than before
(every connection closed) and still serve (bench/loadgen pingpong-100 runs
clean). The servers' normal workloads never leave data unread, so this is
where a server that leaks a connection, or that runs out of buffers and
waits for them forever, shows it.

    bench/echo_abuse.py SERVER_BINARY [LOADGEN]    (loopback only; about 5 s)

Exit status 0 when the server passed, 1 when not.
"""
import os
import socket
import struct
import subprocess
import sys
import time

ROUNDS, CONNS, BLAST_S = 30, 20, 0.1


def nfd(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def abuse(port):
    blob = os.urandom(65536)
    for _ in range(ROUNDS):
        socks = []
        for _ in range(CONNS):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setblocking(False)
            socks.append(s)
        deadline = time.monotonic() + BLAST_S
        while time.monotonic() < deadline:
            for s in socks:
                try:
                    s.send(blob)
                except (BlockingIOError, ConnectionError):
                    pass  # (full; or a server that resets what it cannot take)
        for i, s in enumerate(socks):
            try:
                if i % 3 == 0:  # reset, data unread both ways
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif i % 3 == 1:  # half close first
                    s.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # (already reset by the server)
            s.close()


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__.strip().splitlines()[-3], file=sys.stderr)
        return 2
    server = sys.argv[1]
    loadgen = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(server), "loadgen")
    proc = subprocess.Popen([server, "0", "127.0.0.1"], stdout=subprocess.PIPE, text=True)
    ok = False
    try:
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            print(f"echo_abuse: {server} did not start: {line!r}", file=sys.stderr)
            return 1
        port = int(line.rsplit(":", 1)[1])
        time.sleep(0.3)  # (descriptors a server opens just after it listens)
        base = nfd(proc.pid)
        try:
            abuse(port)
        except OSError as e:  # the server died or stopped accepting
            print(f"echo_abuse: the connections failed: {e}", file=sys.stderr)
            return 1
        for _ in range(100):  # up to 5 s for the closes to be seen
            if nfd(proc.pid) <= base:
                break
            time.sleep(0.05)
        left = nfd(proc.pid) - base
        if left > 0:
            print(f"echo_abuse: {left} descriptors still open after all peers left", file=sys.stderr)
        lg = subprocess.run([loadgen, "-R", "-p", str(port), "-d", "0.5", "-l", "abuse", "pingpong-100"],
                            capture_output=True, text=True, timeout=30)
        if lg.returncode != 0:
            print(f"echo_abuse: pingpong-100 afterwards failed: {lg.stderr.strip()}", file=sys.stderr)
        ok = left <= 0 and lg.returncode == 0
    finally:
        proc.terminate()
        try:
            rc = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        if rc != 0:
            print(f"echo_abuse: exit status {rc} on SIGTERM (want 0)", file=sys.stderr)
            ok = False
    print(f"echo_abuse: {os.path.basename(server)}: {'passed' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
