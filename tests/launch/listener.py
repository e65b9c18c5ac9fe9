"""A TCP listener for tests: answers every connection with a short HTTP response.

usage: listener.py [--proxy] HOST PORT [HOST PORT ...]
Prints "ready" once every socket listens. With --proxy it is a minimal stand-in for the
egress proxy: a request for an absolute http:// URL is fetched and relayed (plain HTTP only);
anything else gets the short response.
"""
import socket
import sys
import threading


PROXY = False


def relay(request):
    """Fetch `GET http://HOST[:PORT]/PATH` for a client of the stand-in proxy."""
    line = request.split(b"\r\n", 1)[0].decode("latin-1")
    method, url, _ = line.split(" ", 2)
    rest = url[len("http://"):]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
    host = host.strip("[]") or hostport
    upstream = socket.create_connection((host, int(port or 80)), timeout=3)
    upstream.sendall(f"{method} /{path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n".encode())
    chunks = []
    while True:
        data = upstream.recv(65536)
        if not data:
            break
        chunks.append(data)
    upstream.close()
    return b"".join(chunks)


def handle(conn):
    try:
        conn.settimeout(2)
        try:
            request = conn.recv(4096)
        except OSError:
            request = b""
        if PROXY and request.split(b" ", 2)[1:2] and request.split(b" ", 2)[1].startswith(b"http://"):
            conn.sendall(relay(request))
        else:
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")
    except OSError:
        pass
    finally:
        conn.close()


def serve(sock):
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


socks = []
args = sys.argv[1:]
if args and args[0] == "--proxy":
    PROXY = True
    args = args[1:]
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
