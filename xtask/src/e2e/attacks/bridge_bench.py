"""Bridge benchmark. `serve PORT`: a sink on 127.0.0.1:PORT ('B' sends 1 GiB, 'P' one byte).
`client PORT`: one 1 GiB transfer and 1,000 short connections; prints the rates."""
import os
import socket
import sys
import threading
import time

GIB = 1 << 30
CHUNK = b"\0" * (1 << 20)

def handle(conn):
    with conn:
        what = conn.recv(1)
        if what == b"B":
            for _ in range(GIB // len(CHUNK)):
                conn.sendall(CHUNK)
        elif what == b"P":
            conn.sendall(b"p")

def serve(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()

def client(port):
    s = socket.create_connection(("127.0.0.1", port))
    start = time.monotonic()
    s.sendall(b"B")
    got = 0
    buf = bytearray(1 << 20)
    while True:
        n = s.recv_into(buf)
        if not n:
            break
        got += n
    secs = time.monotonic() - start
    s.close()
    if got != GIB:
        sys.exit(f"received {got} bytes, not {GIB}")
    start = time.monotonic()
    for _ in range(1000):
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"P")
        if c.recv(1) != b"p":
            sys.exit("short connection failed")
        c.close()
    per_conn = (time.monotonic() - start)
    rss = 0
    try:
        for line in open(f"/proc/{os.getppid()}/status"):
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    except OSError:
        pass
    print(f"mib_per_s={got / secs / 1048576:.1f} ms_per_conn={per_conn:.4f} session_init_rss_kib={rss}")

if sys.argv[1] == "serve":
    serve(int(sys.argv[2]))
else:
    client(int(sys.argv[2]))
