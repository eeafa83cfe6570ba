"""An agent that runs shell commands through os.openpty() + subprocess (the slave is the
child's stdio, the child gets its own session).

careful: close the slave after the spawn, read until EOF/EIO, wait, close the master.
leaky:   the same, but every master is kept.
With CORPUS_PAUSE=1 the middle command is checkpoint.sh (see corpus_sync.py)."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus_sync import checkpoint_command, wait_go  # noqa: E402

variant = sys.argv[1]
assert variant in ("careful", "leaky"), variant
N = 14

wait_go()
kept = []
for i in range(N):
    argv = ["sh", "-c", f"echo step {i}; ls / > /dev/null"]
    if i == N // 2 and checkpoint_command():
        argv = checkpoint_command()
    m, s = os.openpty()
    p = subprocess.Popen(argv, stdin=s, stdout=s, stderr=s, start_new_session=True)
    os.close(s)
    try:
        while os.read(m, 4096):
            pass
    except OSError:
        pass
    p.wait()
    if variant == "careful":
        os.close(m)
    else:
        kept.append(m)
    time.sleep(0.1)
print(f"os.openpty {variant}: {N} commands, {len(kept)} masters kept")
