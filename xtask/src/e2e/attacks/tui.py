"""A stand-in TUI: reports its terminal and size, then each resize; Ctrl-C ends it."""
import os
import shutil
import signal
import sys
import time

signal.signal(signal.SIGINT, signal.SIG_DFL)
def size():
    rows, cols = os.get_terminal_size(0).lines, os.get_terminal_size(0).columns
    return f"{rows}x{cols}"
print("tty=" + ("yes" if os.isatty(0) and os.isatty(1) else "no"), flush=True)
# The first size can still be settling while the session's pty is set up.
time.sleep(0.3)
print(f"size={size()}", flush=True)
signal.signal(signal.SIGWINCH, lambda *_: print(f"resized={size()}", flush=True))
print("ready", flush=True)
while True:
    time.sleep(1)
