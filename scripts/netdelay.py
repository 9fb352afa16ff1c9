#!/usr/bin/env python3
"""A delayed network link for benchmarks, without netem: a network namespace joined to the
root namespace by two TUN devices, and this process forwarding every packet between them
after holding it for half the round-trip time.

    scripts/netdelay.py NAMESPACE RTT_MS     (as root; runs until killed, then tears down)

Inside NAMESPACE the address is 10.77.0.2; outside it is 10.77.0.1. Start servers with
`ip netns exec NAMESPACE …` listening on 10.77.0.2, and connect to it from outside. Prints
"ready" on stdout once the link is up.
"""

import fcntl
import heapq
import os
import select
import signal
import struct
import subprocess
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MTU = 9000  # much larger MTUs stall TCP receive-window autotuning


def tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def sh(*args):
    subprocess.run(args, check=True)


def main():
    ns, rtt_ms = sys.argv[1], float(sys.argv[2])
    one_way = rtt_ms / 2000.0
    outside, inside = f"{ns[:10]}o", f"{ns[:10]}i"
    subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
    sh("ip", "netns", "add", ns)
    a, b = tun(outside), tun(inside)

    def teardown(*_):
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        sys.exit(0)

    signal.signal(signal.SIGTERM, teardown)
    signal.signal(signal.SIGINT, teardown)
    sh("ip", "link", "set", inside, "netns", ns)
    sh("ip", "addr", "add", "10.77.0.1", "peer", "10.77.0.2", "dev", outside)
    sh("ip", "link", "set", outside, "mtu", str(MTU), "up")
    nsx = ["ip", "netns", "exec", ns]
    sh(*nsx, "ip", "addr", "add", "10.77.0.2", "peer", "10.77.0.1", "dev", inside)
    sh(*nsx, "ip", "link", "set", inside, "mtu", str(MTU), "up")
    sh(*nsx, "ip", "link", "set", "lo", "up")
    print("ready", flush=True)

    queue = []  # (due, seq, fd to write, packet)
    seq = 0
    other = {a: b, b: a}
    while True:
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else 1.0
        ready, _, _ = select.select([a, b], [], [], timeout)
        now = time.monotonic()
        for fd in ready:
            while True:
                try:
                    packet = os.read(fd, MTU + 64)
                except BlockingIOError:
                    break
                heapq.heappush(queue, (now + one_way, seq, other[fd], packet))
                seq += 1
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, fd, packet = heapq.heappop(queue)
            try:
                os.write(fd, packet)
            except (BlockingIOError, OSError):
                pass  # a full queue drops the packet, as a real link would


if __name__ == "__main__":
    main()
