#!/usr/bin/env python3
"""udp_trio_echo.py: the Trio peer of the UDP benchmark (issue #10,
bench/udp_bench.sh), the UDP echo server as Trio's documentation writes one:
trio.socket, await recvfrom, await sendto, one datagram at a time (Trio has
no batched calls; each call is a checkpoint, and a receive on an empty socket
parks the task in the epoll loop: Trio #1595).

    udp_trio_echo.py PORT [HOST]    prints "listening on HOST:PORT", exits 0
                                    on SIGTERM or SIGINT
"""
import signal
import sys

import trio


async def serve(port, host):
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind((host, port))
    print("listening on %s:%d" % (host, sock.getsockname()[1]), flush=True)
    async with trio.open_nursery() as nursery:

        async def stop_on_signal():
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(stop_on_signal)
        while True:
            try:
                data, peer = await sock.recvfrom(65536)
                await sock.sendto(data, peer)
            except OSError:
                pass  # an ICMP error for an earlier echo: it concerns one datagram
    sock.close()


def main():
    if len(sys.argv) not in (2, 3):
        print("usage: udp_trio_echo.py PORT [HOST]", file=sys.stderr)
        return 2
    try:
        port = int(sys.argv[1])
    except ValueError:
        port = -1
    host = sys.argv[2] if len(sys.argv) == 3 else "127.0.0.1"
    if not 0 <= port <= 65535:
        print("udp_trio_echo.py: bad port %s" % sys.argv[1], file=sys.stderr)
        return 2
    trio.run(serve, port, host)
    return 0


if __name__ == "__main__":
    sys.exit(main())
