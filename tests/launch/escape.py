"""Tries every way out a contained agent might take; prints one line per attempt.

Each line is `NAME open` (the attempt got through) or `NAME blocked: ERROR`.
"""
import socket

TCP = [
    ("tcp-internet-v4", socket.AF_INET, ("192.0.2.1", 80)),
    ("tcp-internet-v6", socket.AF_INET6, ("2001:db8::1", 80)),
    ("tcp-loopback-other-port", socket.AF_INET, ("127.0.0.1", 9999)),
    ("tcp-loopback-other-port-v6", socket.AF_INET6, ("::1", 9999)),
    ("tcp-loopback-127.0.0.2", socket.AF_INET, ("127.0.0.2", 9999)),
    ("tcp-dns-stub", socket.AF_INET, ("127.0.0.53", 53)),
    ("tcp-dns-internet", socket.AF_INET, ("192.0.2.1", 53)),
]
UDP = [
    ("udp-internet-v4", socket.AF_INET, ("192.0.2.1", 9)),
    ("udp-internet-v6", socket.AF_INET6, ("2001:db8::1", 9)),
    ("udp-dns-stub", socket.AF_INET, ("127.0.0.53", 53)),
    ("udp-dns-internet", socket.AF_INET, ("192.0.2.1", 53)),
    ("udp-loopback-other-port", socket.AF_INET, ("127.0.0.1", 9999)),
    ("udp-proxy-port", socket.AF_INET, ("127.0.0.1", 8888)),
]

for name, family, addr in TCP:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect(addr)
        print(f"{name} open", flush=True)
    except OSError as err:
        print(f"{name} blocked: {err}", flush=True)
    finally:
        s.close()

for name, family, addr in UDP:
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        s.sendto(b"x", addr)
        print(f"{name} open", flush=True)
    except OSError as err:
        print(f"{name} blocked: {err}", flush=True)
    finally:
        s.close()
