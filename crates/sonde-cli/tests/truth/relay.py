"""A middlebox for perf's UDP truth test (tests/truth.rs): it relays an
iperf3 test, control over TCP and data over UDP, from PORT to a server on
127.0.0.1:UPSTREAM, and does known harm to data datagrams (those longer
than iperf3's 12-byte header, in either direction), by their sequence
number (the big-endian u32 after the timestamp):

    seq % 10 == 0   dropped
    seq % 50 == 25  sent twice
    seq % 100 == 55 held back and sent after the next one forwarded

A held datagram with nothing after it goes out after 50 ms of quiet. The
test works out from the same rules what iperf3's counters must say.

usage: truth_relay.py PORT UPSTREAM
"""

import selectors
import socket
import struct
import sys

PORT, UPSTREAM = int(sys.argv[1]), int(sys.argv[2])
TARGET = ("127.0.0.1", UPSTREAM)

sel = selectors.DefaultSelector()
tcp = socket.create_server(("0.0.0.0", PORT), reuse_port=False)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", PORT))
for s in (tcp, udp):
    s.setblocking(False)
sel.register(tcp, selectors.EVENT_READ, ("accept", None))
sel.register(udp, selectors.EVENT_READ, ("client", None))

upstream_of = {}  # client address -> its socket towards the server
held = {}  # direction -> (its send, the datagram held back)


def harm(data, way, send):
    """Forward `data` with `send`, doing the rule's harm to data datagrams."""
    if len(data) <= 12:
        send(data)
        return
    seq = struct.unpack(">I", data[8:12])[0]
    if seq % 10 == 0:
        return
    if seq % 100 == 55:
        held[way] = (send, data)
        return
    send(data)
    if seq % 50 == 25:
        send(data)
    late = held.pop(way, None)
    if late is not None:
        send(late[1])


def pipe(src, dst):
    """Move what `src` has to `dst`; False once `src` is done."""
    try:
        data = src.recv(65536)
    except ConnectionError:
        data = b""
    if not data:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return False
    try:
        dst.sendall(data)
    except ConnectionError:
        return False
    return True


print("listening", flush=True)
while True:
    events = sel.select(timeout=0.05)
    if not events:
        for send, data in held.values():
            send(data)
        held.clear()
    for key, _ in events:
        kind, peer = key.data
        if kind == "accept":
            conn, _ = tcp.accept()
            up = socket.create_connection(TARGET)
            for a, b in ((conn, up), (up, conn)):
                sel.register(a, selectors.EVENT_READ, ("tcp", b))
        elif kind == "tcp":
            if not pipe(key.fileobj, peer):
                sel.unregister(key.fileobj)
        elif kind == "client":
            data, addr = udp.recvfrom(65536)
            up = upstream_of.get(addr)
            if up is None:
                up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                up.connect(TARGET)
                up.setblocking(False)
                upstream_of[addr] = up
                sel.register(up, selectors.EVENT_READ, ("server", addr))
            harm(data, (addr, "up"), up.send)
        elif kind == "server":
            data = key.fileobj.recv(65536)
            harm(data, (peer, "down"), lambda d, a=peer: udp.sendto(d, a))
