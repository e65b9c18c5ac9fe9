"""A flood of refused attempts for the audit benchmark: N datagrams to 192.0.2.9:9 as fast as
one process sends them. Prints `unit=UNIT attempts=N refused=R seconds=S`.

flood.py N
"""
import re
import socket
import sys
import time

N = int(sys.argv[1])
match = re.search(r"pipelock-agent-[0-9a-f]+\.service", open("/proc/self/cgroup").read())
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
target = ("192.0.2.9", 9)
refused = 0
start = time.perf_counter()
for _ in range(N):
    try:
        s.sendto(b"x", target)
    except OSError:
        refused += 1
seconds = time.perf_counter() - start
print(f"unit={match.group(0) if match else 'none'} attempts={N} refused={refused} seconds={seconds:.3f}")
