"""An agent that runs shell commands through pexpect.

careful: spawn, expect EOF, close() (pexpect closes the master and reaps the child).
leaky:   every spawn object is kept and never closed; half the commands hang at a y/N prompt
         and are killed with SIGKILL (the child dies, the master stays open in the agent).
With CORPUS_PAUSE=1 the middle command is checkpoint.sh (see corpus_sync.py)."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pexpect  # noqa: E402

from corpus_sync import checkpoint_command, wait_go  # noqa: E402

variant = sys.argv[1]
assert variant in ("careful", "leaky"), variant
N = 14
PROMPT = ["bash", "-c", "read -p 'Overwrite? y/N ' a; echo got $a"]

wait_go()
kept = []
for i in range(N):
    argv = ["bash", "-c", f"echo step {i}; ls / > /dev/null"]
    prompt = variant == "leaky" and i % 2 == 1
    if i == N // 2 and checkpoint_command():
        argv, prompt = checkpoint_command(), False
    elif prompt:
        argv = PROMPT
    child = pexpect.spawn(argv[0], argv[1:], timeout=60, encoding="utf-8")
    if prompt:
        child.expect("y/N")
        child.kill(signal.SIGKILL)
    child.expect(pexpect.EOF)
    if variant == "careful":
        child.close()
    else:
        child.wait()  # reaped, but the master stays open: the spawn object is kept
        kept.append(child)
    time.sleep(0.1)
print(f"pexpect {variant}: {N} commands, {len(kept)} spawn objects kept")
