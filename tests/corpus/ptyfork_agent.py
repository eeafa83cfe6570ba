"""An agent that runs shell commands through pty.fork().

careful: read until EOF/EIO, waitpid, close the master.
leaky:   the same, but every master is kept.
With CORPUS_PAUSE=1 the middle command is checkpoint.sh (see corpus_sync.py)."""
import os
import pty
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
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    try:
        while os.read(fd, 4096):
            pass
    except OSError:  # EIO: the slave side is closed
        pass
    os.waitpid(pid, 0)
    if variant == "careful":
        os.close(fd)
    else:
        kept.append(fd)
    time.sleep(0.1)
print(f"pty.fork {variant}: {N} commands, {len(kept)} masters kept")
