"""Runs a command on a new terminal, types Ctrl-C once it printed "started", reports how it ended.

usage: ctrl_c.py COMMAND [ARGS...]   prints `ended signal=N code=N took=SECONDS`
"""
import os
import pty
import select
import sys
import time

pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])

seen = b""
deadline = time.time() + 20
while b"started" not in seen and time.time() < deadline:
    ready, _, _ = select.select([fd], [], [], 0.5)
    if ready:
        try:
            seen += os.read(fd, 1024)
        except OSError:
            break
# A person types later than a script could; give sudo time to set up its terminal relay.
time.sleep(1)
os.write(fd, b"\x03")
typed = time.time()
# Drain the terminal until the command side closes it, or give up after 15 s.
while time.time() - typed < 15:
    ready, _, _ = select.select([fd], [], [], 0.2)
    if ready:
        try:
            if not os.read(fd, 1024):
                break
        except OSError:
            break
    elif os.waitpid(pid, os.WNOHANG)[0]:
        print(f"ended signal=? code=? took={time.time() - typed:.2f}")
        sys.exit(0)
else:
    os.kill(pid, 9)
_, status = os.waitpid(pid, 0)
signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
print(f"ended signal={signal} code={code} took={time.time() - typed:.2f}")
