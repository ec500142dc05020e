"""Capture ARP and ICMPv6 neighbour advertisements on one interface (run in a netns).

    netcapture.py IFNAME SECONDS

Prints "ready" once the AF_PACKET socket is bound, then one JSON object per
frame seen: {"kind": "arp", "op": 1|2, "sha": mac, "spa": ip, "tpa": ip} or
{"kind": "na", "src": ip, "target": ip, "tlla": mac, "override": bool, "hlim": n}.
A real listener on the real peer interface: what the test sees is what a
switch or a neighbour would see.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time


def mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def main() -> None:
    ifname, seconds = sys.argv[1], float(sys.argv[2])
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sock.bind((ifname, 0))
    sock.settimeout(0.1)
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            frame, addr = sock.recvfrom(65535)
        except TimeoutError:
            continue
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        ethertype = struct.unpack("!H", frame[12:14])[0]
        if ethertype == 0x0806 and len(frame) >= 42:
            op = struct.unpack("!H", frame[20:22])[0]
            print(json.dumps({"kind": "arp", "op": op, "sha": mac(frame[22:28]),
                              "spa": socket.inet_ntoa(frame[28:32]),
                              "tpa": socket.inet_ntoa(frame[38:42])}), flush=True)
        elif ethertype == 0x86DD and len(frame) >= 54 and frame[20] == 58 and frame[54] == 136:
            body = frame[54:]
            opt = body[24:]
            tlla = mac(opt[2:8]) if len(opt) >= 8 and opt[0] == 2 else ""
            print(json.dumps({"kind": "na",
                              "src": socket.inet_ntop(socket.AF_INET6, frame[22:38]),
                              "target": socket.inet_ntop(socket.AF_INET6, body[8:24]),
                              "tlla": tlla, "override": bool(body[4] & 0x20),
                              "hlim": frame[21]}), flush=True)


if __name__ == "__main__":
    main()
