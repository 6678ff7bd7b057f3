#!/usr/bin/env python3
"""Writes the record-framed seeds of turn_message and sfu_datagram
(fuzz/corpus/<target>/seed-*): real STUN/TURN exchanges, DTLS, RTP and
RTCP shapes, each record `[tag][u16 BE length][bytes]` (src/lib.rs,
`records`). Run from fuzz/: python3 seeds/write_seeds.py"""
import os
import struct

COOKIE = 0x2112A442


def rec(tag, data):
    return bytes([tag]) + struct.pack(">H", len(data)) + data


def attr(t, v):
    pad = (-len(v)) % 4
    return struct.pack(">HH", t, len(v)) + v + b"\0" * pad


def stun(method_class, tid, attrs=b""):
    return struct.pack(">HHI", method_class, len(attrs), COOKIE) + tid + attrs


def xor_addr(ip, port):
    a = bytes(int(x) for x in ip.split("."))
    x = struct.unpack(">I", a)[0] ^ COOKIE
    return struct.pack(">BBHI", 0, 1, port ^ (COOKIE >> 16), x)


def tid(n):
    return bytes([n]) * 12


REQ_TRANSPORT_UDP = attr(0x0019, b"\x11\0\0\0")
PEER = xor_addr("203.0.113.0", 5000)

binding = stun(0x0001, tid(1))
allocate = stun(0x0003, tid(2), REQ_TRANSPORT_UDP)
allocate_dual = stun(0x0003, tid(3), REQ_TRANSPORT_UDP + attr(0x8000, b"\x02\0\0\0"))
permission = stun(0x0008, tid(4), attr(0x0012, PEER))
channel_bind = stun(0x0009, tid(5), attr(0x000C, b"\x40\0\0\0") + attr(0x0012, PEER))
refresh0 = stun(0x0004, tid(6), attr(0x000D, b"\0\0\0\0"))
send = stun(0x0016, tid(7), attr(0x0012, PEER) + attr(0x0013, b"hello peer"))
channel_data = struct.pack(">HH", 0x4000, 5) + b"hello" + b"\0\0\0"

CLIENT, PEER_IN, ADVANCE, SIGNED = 0x00, 0x01, 0x02, 0x20
turn = {
    "binding": [rec(CLIENT, binding)],
    "allocate-challenge": [rec(CLIENT, allocate)],
    "allocate-relay-both-ways": [
        rec(CLIENT, allocate),
        rec(CLIENT | SIGNED, allocate),
        rec(CLIENT | SIGNED, permission),
        rec(CLIENT, send),
        rec(PEER_IN | (1 << 2), b"from the peer"),
        rec(CLIENT | SIGNED, channel_bind),
        rec(CLIENT, channel_data),
        rec(PEER_IN | (1 << 2), b"on the channel"),
        rec(ADVANCE | (40 << 2), b""),
        rec(CLIENT | SIGNED, refresh0),
    ],
    "allocate-dual-tcp": [
        rec(CLIENT | 0x10, allocate_dual),
        rec(CLIENT | 0x10 | SIGNED, allocate_dual),
    ],
    "wrong-key": [rec(1 << 2, allocate), rec((1 << 2) | SIGNED, allocate)],
}

# SFU engine datagrams: publisher (tag 0), viewer (1), strangers (2, 3).
stun_check = stun(
    0x0001,
    tid(8),
    attr(0x0006, b"server:client")
    + attr(0x0024, b"\x6e\x7f\x1e\xff")
    + attr(0x8029, b"\0" * 8)
    + attr(0x0008, b"\0" * 20)
    + attr(0x8028, b"\0" * 4),
)
client_hello_body = (
    b"\xfe\xfd" + b"\x11" * 32 + b"\x00" + b"\x00" + b"\x00\x04\xc0\x2b\xc0\x2f" + b"\x01\x00"
    + struct.pack(">H", 8) + b"\x00\x0e\x00\x04\x00\x02\x00\x01"
)
handshake = b"\x01" + struct.pack(">I", len(client_hello_body))[1:] + b"\0\0" + b"\0\0\0" + struct.pack(">I", len(client_hello_body))[1:] + client_hello_body
dtls = b"\x16\xfe\xfd" + b"\0\0" + b"\0" * 6 + struct.pack(">H", len(handshake)) + handshake
rtp = struct.pack(">BBHII", 0x90, 96, 1000, 90000, 0x11223344) + struct.pack(">HH", 0xBEDE, 1) + b"\x10\x01\0\0" + b"\x7c\x85" + b"\xaa" * 40 + b"\0" * 10
rtcp = struct.pack(">BBHI", 0x80, 200, 6, 0x11223344) + b"\0" * 20 + struct.pack(">BBHII", 0x81, 206, 2, 0x11223344, 0x55667788)
sfu = {
    "plain-binding": [rec(2, binding)],
    "ice-check-shapes": [rec(0, stun_check), rec(1, stun_check), rec(3, stun_check)],
    "dtls-client-hello": [rec(0, dtls), rec(1 | (50 << 2), dtls)],
    "srtp-shapes": [rec(0, rtp), rec(0, rtcp), rec(1, rtcp), rec(2 | (63 << 2), rtp)],
}

for target, seeds in (("turn_message", turn), ("sfu_datagram", sfu)):
    os.makedirs(f"corpus/{target}", exist_ok=True)
    for name, records in seeds.items():
        with open(f"corpus/{target}/seed-{name}", "wb") as f:
            f.write(b"".join(records))
