"""Stands in for systemd and the journal around pipelock-audit, in the root test's sandbox.

audit_root.py AUDIT AGENT UNIT HEX: starts the listener as systemd would (NOTIFY_SOCKET, and
after a restart LISTEN_FDS with the stored descriptors), sets up one session the way its unit
does (`unshare -n` + `--attach`), floods from it as the agent, restarts the listener, and
prints one JSON object: the records and what happened. The Rust test judges it.
"""
import array
import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

AUDIT, AGENT, UNIT, HEX = sys.argv[1:5]
FLOOD = 20000
RUN = "/run/audit-test"
os.makedirs(RUN, exist_ok=True)
os.makedirs("/run/pipelock-containment", exist_ok=True)
AUDIT_SOCKET = "/run/pipelock-containment/audit.sock"


def datagram_socket(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    return s


notify = datagram_socket(f"{RUN}/notify")
journal = datagram_socket(f"{RUN}/journal")
store = {}  # FDNAME -> fd, as systemd's descriptor store
records = []
events = []


def journal_fields(data):
    """The native protocol, as pipelock-audit writes it (values without newlines)."""
    fields = {}
    for line in data.split(b"\n"):
        if b"=" in line:
            key, value = line.split(b"=", 1)
            fields[key.decode()] = value.decode(errors="replace")
    return fields


def pump(seconds, until=None):
    """Take notifications and journal records for up to `seconds`."""
    end = time.time() + seconds
    while time.time() < end:
        ready, _, _ = select.select([notify, journal], [], [], 0.05)
        if journal in ready:
            records.append(journal_fields(journal.recv(65536)))
        if notify in ready:
            fds = array.array("i")
            msg, ancdata, _, _ = notify.recvmsg(4096, socket.CMSG_SPACE(16 * fds.itemsize))
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
            state = dict(l.split("=", 1) for l in msg.decode().split("\n") if "=" in l)
            events.append(sorted(state))
            if state.get("FDSTORE") == "1":
                store[state["FDNAME"]] = fds[0]
            elif state.get("FDSTOREREMOVE") == "1":
                fd = store.pop(state["FDNAME"], None)
                if fd is not None:
                    os.close(fd)
            if until and until(state):
                return True
    return False


def start_listener(with_store):
    env = dict(os.environ, NOTIFY_SOCKET=f"{RUN}/notify", PIPELOCK_AUDIT_SOCKET=AUDIT_SOCKET)
    names = list(store) if with_store else []
    fds = [store[n] for n in names]
    if names:
        env.update(LISTEN_FDS=str(len(fds)), LISTEN_FDNAMES=":".join(names))

    def place_fds():
        # Descriptors 3.. in order, as systemd passes them (copied high first: no clobbering).
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 200) for fd in fds]
        for i, fd in enumerate(high):
            os.dup2(fd, 3 + i, inheritable=True)

    argv = ["sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', AUDIT,
            "--journal-socket", f"{RUN}/journal", "--counters", f"{RUN}/counters.json"]
    if not names:
        env.pop("LISTEN_FDS", None)
    child = subprocess.Popen(argv, env=env, preexec_fn=place_fds, close_fds=False)
    if not pump(5, until=lambda s: s.get("READY") == "1"):
        raise SystemExit("the listener did not say READY=1")
    return child


def stop_listener(child):
    child.send_signal(signal.SIGTERM)
    pump(0.5)
    return child.wait(timeout=5)


def vm_hwm(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


AGENT_SCRIPT = f"""
import socket, sys, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
slow = 0.0
for i in range({FLOOD}):
    t = time.time()
    try:
        u.sendto(b"x", ("192.0.2.9", 9))
        print("SENT: the flood was not refused", flush=True)
        sys.exit(1)
    except OSError:
        pass
    slow = max(slow, time.time() - t)
print("flooded", round(slow, 4), flush=True)
for port in (4241, 4242, 4243):
    sys.stdin.readline()
    s = socket.socket()
    try:
        s.connect(("192.0.2.7", port))
        print("CONNECTED", flush=True)
    except OSError as e:
        print("refused", port, e.errno, flush=True)
sys.stdin.readline()
"""

result = {}
first = start_listener(with_store=False)
session = subprocess.Popen(
    ["unshare", "--net", "sh", "-c",
     f'{AUDIT} --attach {HEX} && exec setpriv --reuid {AGENT} --regid {AGENT} --clear-groups '
     f'python3 -c "$0"', AGENT_SCRIPT],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
result["flood_line"] = session.stdout.readline().strip()
if not result["flood_line"].startswith("flooded"):
    raise SystemExit(f"the session did not flood: {result['flood_line']!r}, exit {session.wait()}")
pump(2.5)
result["listener_alive_after_flood"] = first.poll() is None
result["listener_hwm_kib"] = vm_hwm(first.pid)
result["first_exit"] = stop_listener(first)
result["stored_after_first"] = sorted(store)

# Control: a listener that does not get the stored descriptors knows nothing of the session.
control = start_listener(with_store=False)
before = len(records)
session.stdin.write("go\n")
session.stdin.flush()
result["marker1_line"] = session.stdout.readline().strip()
pump(2)
result["control_records"] = records[before:]
result["control_exit"] = stop_listener(control)

# The restart systemd does: the stored descriptors come back.
second = start_listener(with_store=True)
session.stdin.write("go\n")
session.stdin.flush()
result["marker2_line"] = session.stdout.readline().strip()
pump(2)
# The last attempt right before the session's stop: the kernel may still batch it.
session.stdin.write("go\n")
session.stdin.flush()
result["marker3_line"] = session.stdout.readline().strip()
subprocess.run([AUDIT, "--detach", UNIT], check=True)
pump(1)
result["stored_after_detach"] = sorted(store)
result["second_exit"] = stop_listener(second)
session.stdin.write("end\n")
session.stdin.flush()
result["session_exit"] = session.wait(timeout=10)
result["records"] = records
result["events"] = events
print("RESULT " + json.dumps(result))
