"""A stand-in TUI: reports its terminal and size, then each resize; Ctrl-C ends it."""
import os
import signal
import time

signal.signal(signal.SIGINT, signal.SIG_DFL)
resized = False


def on_resize(*_):
    # Only a flag: printing here could re-enter a print of the main loop.
    global resized
    resized = True


def size():
    s = os.get_terminal_size(0)
    return f"{s.lines}x{s.columns}"


print("tty=" + ("yes" if os.isatty(0) and os.isatty(1) else "no"), flush=True)
# The first size can still be settling while the session's pty is set up.
time.sleep(0.3)
print(f"size={size()}", flush=True)
signal.signal(signal.SIGWINCH, on_resize)
print("ready", flush=True)
while True:
    if resized:
        resized = False
        print(f"resized={size()}", flush=True)
    time.sleep(0.05)
