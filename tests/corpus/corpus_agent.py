"""The loop the Python agents share: N shell commands, each through a fresh PTY; the careful
variant closes each master after its command, the leaky one keeps them all. With
CORPUS_PAUSE=1 the middle command is checkpoint.sh (see corpus_sync.py)."""
import os
import sys
import time

from corpus_sync import checkpoint_command, wait_go

N = 14


def run(label, spawn):
    """`spawn(argv)` starts argv on a new PTY and returns (master fd, wait for the child)."""
    variant = sys.argv[1]
    assert variant in ("careful", "leaky"), variant
    wait_go()
    kept = []
    for i in range(N):
        argv = ["sh", "-c", f"echo step {i}; ls / > /dev/null"]
        if i == N // 2 and checkpoint_command():
            argv = checkpoint_command()
        master, wait = spawn(argv)
        try:
            while os.read(master, 4096):
                pass
        except OSError:  # EIO: the slave side is closed
            pass
        wait()
        if variant == "careful":
            os.close(master)
        else:
            kept.append(master)
        time.sleep(0.1)
    print(f"{label} {variant}: {N} commands, {len(kept)} masters kept")
