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
    # systemd-resolved's varlink API: a name resolved here is a DNS query the agent did not send.
    ("unix-resolved-varlink", socket.AF_UNIX, socket.SOCK_STREAM, "/run/systemd/resolve/io.systemd.Resolve"),
]
# resolved answers localhost itself: the call proves the channel without any traffic leaving.
VARLINK_CALL = b'{"method":"io.systemd.Resolve.ResolveHostname","parameters":{"name":"localhost"}}\0'


def varlink_reply(s):
    s.sendall(VARLINK_CALL)
    reply = b""
    while not reply.endswith(b"\0"):
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
    if b'"addresses"' not in reply:
        raise OSError(f"no addresses in the varlink reply {reply[:200]!r}")

for name, family, kind, addr in ATTEMPTS:
    s = socket.socket(family, kind)
    s.settimeout(3)
    try:
        s.connect(addr)
        if family == socket.AF_UNIX and "relay" in name:
            reply = s.recv(16)
            if reply != b"RELAYED":
                raise OSError(f"unexpected reply {reply!r}")
        if name == "unix-resolved-varlink":
            varlink_reply(s)
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
