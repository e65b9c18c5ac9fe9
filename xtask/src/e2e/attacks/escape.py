"""Tries ways out of a contained session; prints one line per attempt: `NAME open` or `NAME blocked: ERROR`.

Run where nothing stops it (the control) every attempt prints `open`.
"""
import socket
import sys

INET_V4, INET_V6, CANARY = sys.argv[1], sys.argv[2], int(sys.argv[3])
ATTEMPTS = [
    ("tcp-internet-v4", socket.AF_INET, socket.SOCK_STREAM, (INET_V4, 80)),
    ("tcp-internet-v6", socket.AF_INET6, socket.SOCK_STREAM, (INET_V6, 80)),
    ("tcp-host-canary-proxy", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", CANARY)),
    ("unix-abstract-relay", socket.AF_UNIX, socket.SOCK_STREAM, "\0plc-e2e-relay"),
    ("unix-run-relay", socket.AF_UNIX, socket.SOCK_STREAM, "/run/plc-e2e-relay.sock"),
    ("unix-tmp-relay", socket.AF_UNIX, socket.SOCK_STREAM, "/tmp/plc-e2e-relay.sock"),
    ("unix-dbus-system-bus", socket.AF_UNIX, socket.SOCK_STREAM, "/run/dbus/system_bus_socket"),
]

for name, family, kind, addr in ATTEMPTS:
    s = socket.socket(family, kind)
    s.settimeout(3)
    try:
        s.connect(addr)
        if family == socket.AF_UNIX and "relay" in name:
            reply = s.recv(16)
            if reply != b"RELAYED":
                raise OSError(f"unexpected reply {reply!r}")
        print(f"{name} open", flush=True)
    except OSError as err:
        print(f"{name} blocked: {err}", flush=True)
    finally:
        s.close()
# A datagram to the internet host: without a route it fails at once.
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.sendto(b"x", (INET_V4, 9))
    print("udp-internet-v4 open", flush=True)
except OSError as err:
    print(f"udp-internet-v4 blocked: {err}", flush=True)
