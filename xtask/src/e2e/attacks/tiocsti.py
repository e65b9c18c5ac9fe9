"""Pushes `INJECTED` and a newline into the input of the terminal on fd 0 (TIOCSTI)."""
import fcntl
import termios

try:
    for byte in b"INJECTED\n":
        fcntl.ioctl(0, termios.TIOCSTI, bytes([byte]))
    print("tiocsti=ok", flush=True)
except OSError as err:
    print(f"tiocsti=refused: {err}", flush=True)
