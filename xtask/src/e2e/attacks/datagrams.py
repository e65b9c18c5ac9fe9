"""Sends UDP datagrams to HOST:9 as fast as it can until FILE exists; prints how many were sent
and how many the kernel let through (a send that does not fail with EPERM got past the rule)."""
import errno
import os
import socket
import sys

host, stop = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = through = 0
while True:
    for _ in range(100):
        sent += 1
        try:
            s.sendto(b"x", (host, 9))
            through += 1
        except OSError as err:
            if err.errno != errno.EPERM:
                raise
    if os.path.exists(stop):
        break
print(f"sent={sent} through={through}", flush=True)
