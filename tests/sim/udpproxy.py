#!/usr/bin/python3
"""A UDP relay that loses packets: ``udpproxy.py LISTEN_PORT TARGET_PORT LOSS SEED``.

Every datagram in either direction is dropped with probability LOSS (0..1),
decided by a seeded generator so a run is repeatable.  One client at a time,
which is all an IPMI session needs.  Loopback only.
"""

import random
import select
import socket
import sys


def main() -> None:
    listen, target, loss, seed = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), \
        int(sys.argv[4])
    rnd = random.Random(seed)
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(("127.0.0.1", listen))
    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back.connect(("127.0.0.1", target))
    client = None
    while True:
        ready, _, _ = select.select([front, back], [], [])
        for sock in ready:
            if sock is front:
                data, client = front.recvfrom(65536)
                if rnd.random() >= loss:
                    back.send(data)
            else:
                data = back.recv(65536)
                if client is not None and rnd.random() >= loss:
                    front.sendto(data, client)


if __name__ == "__main__":
    main()
