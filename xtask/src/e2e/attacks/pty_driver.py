"""Acts as the operator's terminal: runs argv on a pty of 24x80, resizes it to 40x120 once the
program is ready, then types Ctrl-C. Prints what the program printed and `exit=CODE`.
With `--plain` first, only runs argv on the pty and collects its output."""
import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time

plain = sys.argv[1] == "--plain"
argv = sys.argv[2:] if plain else sys.argv[1:]
pid, master = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
seen = b""
deadline = time.time() + 30
stage = 0
while time.time() < deadline:
    ready, _, _ = select.select([master], [], [], 0.2)
    if ready:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    if plain:
        continue
    if stage == 0 and b"ready" in seen:
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        stage = 1
    elif stage == 1 and b"resized=" in seen:
        time.sleep(0.2)
        os.write(master, b"\x03")
        stage = 2
_, status = os.waitpid(pid, 0)
print(seen.decode(errors="replace").replace("\r", ""))
print(f"exit={os.waitstatus_to_exitcode(status)}")
