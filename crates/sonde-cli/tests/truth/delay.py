"""A UDP echo that answers each datagram DELAY seconds after it came in:
a known delay the truth tests (tests/truth.rs) add to a shaped path,
where netem is not in the kernel. One datagram in flight at a time, as
`rtt` sends them.

usage: delay.py PORT DELAY
"""

import socket
import sys
import time

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind(("0.0.0.0", int(sys.argv[1])))
delay = float(sys.argv[2])
print("listening", flush=True)
while True:
    data, peer = s.recvfrom(65536)
    time.sleep(delay)
    s.sendto(data, peer)
