"""Blocked attempts for the audit checks. Prints `unit UNIT` (from its cgroup), then one line
per attempt: TCP to INET:4471, a UDP datagram to INET:9, a DNS query for NAME; with BURST > 0,
BURST TCP connects to INET:4472 and the slowest one's time.

attempts.py INET NAME [BURST]
"""
import re
import socket
import struct
import sys
import time

INET, NAME = sys.argv[1], sys.argv[2]
BURST = int(sys.argv[3]) if len(sys.argv) > 3 else 0
cgroup = open("/proc/self/cgroup").read()
match = re.search(r"pipelock-agent-[0-9a-f]+\.service", cgroup)
print("unit", match.group(0) if match else "none", flush=True)


def tcp(port):
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((INET, port))
        return "open"
    except OSError as err:
        return f"blocked {err.errno}"
    finally:
        s.close()


def nameserver():
    try:
        for line in open("/etc/resolv.conf"):
            words = line.split()
            if len(words) >= 2 and words[0] == "nameserver":
                return words[1]
    except OSError:
        pass
    return INET


print("tcp", tcp(4471), flush=True)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"x", (INET, 9))
    print("udp open", flush=True)
except OSError as err:
    print("udp blocked", err.errno, flush=True)
query = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
for label in NAME.split("."):
    query += bytes([len(label)]) + label.encode()
query += b"\0" + struct.pack(">HH", 1, 1)
server = nameserver()
family = socket.AF_INET6 if ":" in server else socket.AF_INET
d = socket.socket(family, socket.SOCK_DGRAM)
try:
    d.sendto(query, (server, 53))
    print("dns open", server, flush=True)
except OSError as err:
    print("dns blocked", err.errno, server, flush=True)
if BURST:
    slowest = 0.0
    start = time.time()
    refused = 0
    for _ in range(BURST):
        t = time.time()
        refused += tcp(4472).startswith("blocked")
        slowest = max(slowest, time.time() - t)
    print("burst", refused, round(slowest, 4), round(time.time() - start, 2), flush=True)
