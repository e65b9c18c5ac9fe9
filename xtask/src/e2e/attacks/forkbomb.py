"""Forks up to N children that each sleep; prints how many it got and why it stopped."""
import os
import signal
import sys
import time

limit = int(sys.argv[1])
children = []
reason = "limit reached"
for _ in range(limit):
    try:
        pid = os.fork()
    except OSError as err:
        reason = str(err)
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    children.append(pid)
print(f"forked={len(children)} stopped={reason}", flush=True)
for pid in children:
    os.kill(pid, signal.SIGKILL)
for pid in children:
    os.waitpid(pid, 0)
