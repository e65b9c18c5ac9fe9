"""A TCP listener for tests: answers every connection with a short HTTP response.

usage: listener.py HOST PORT [HOST PORT ...]   (prints "ready" once every socket listens)
"""
import socket
import sys
import threading


def serve(sock):
    while True:
        conn, _ = sock.accept()
        try:
            conn.settimeout(2)
            try:
                conn.recv(4096)
            except OSError:
                pass
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")
        except OSError:
            pass
        finally:
            conn.close()


socks = []
args = sys.argv[1:]
for host, port in zip(args[::2], args[1::2]):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6 and host == "::":
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((host, int(port)))
    sock.listen(64)
    socks.append(sock)
print("ready", flush=True)
threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in socks]
for t in threads:
    t.start()
for t in threads:
    t.join()
