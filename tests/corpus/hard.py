"""Hard workloads for the scorer, agent-like (os.openpty + subprocess, see openpty_agent.py):

slow-leak: 200 short commands, one master in 20 kept (10 leaked in all): leaky.
burst:     12 rounds of 8 commands in parallel, every master closed: healthy.
long:      1,000 `true` commands, each through a fresh PTY closed after: healthy.
With CORPUS_PAUSE=1 one command half-way is checkpoint.sh (see corpus_sync.py)."""
import os
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus_sync import checkpoint_command, wait_go  # noqa: E402


def start(argv):
    m, s = os.openpty()
    p = subprocess.Popen(argv, stdin=s, stdout=s, stderr=s, start_new_session=True, close_fds=True)
    os.close(s)
    return m, p


def drain(masters):
    """Reads every master until EOF/EIO."""
    open_ = set(masters)
    while open_:
        ready, _, _ = select.select(list(open_), [], [], 60)
        for m in ready:
            try:
                if os.read(m, 4096):
                    continue
            except OSError:
                pass
            open_.discard(m)


def sequential(n, argv, keep_every, think):
    kept = []
    for i in range(n):
        cmd = argv
        if i == n // 2 and checkpoint_command():
            cmd = checkpoint_command()
        m, p = start(cmd)
        drain([m])
        p.wait()
        if keep_every and i % keep_every == keep_every - 1:
            kept.append(m)
        else:
            os.close(m)
        time.sleep(think)
    return kept


def burst(rounds, width):
    for r in range(rounds):
        cmds = [["sh", "-c", f"echo burst {r}.{j}; sleep 0.05"] for j in range(width)]
        if r == rounds // 2 and checkpoint_command():
            cmds[0] = checkpoint_command()
        started = [start(c) for c in cmds]
        drain([m for m, _ in started])
        for m, p in started:
            p.wait()
            os.close(m)


wait_go()
which = sys.argv[1]
if which == "slow-leak":
    kept = sequential(200, ["sh", "-c", "echo step"], 20, 0.015)
    print(f"slow-leak: 200 commands, {len(kept)} masters kept")
elif which == "burst":
    burst(12, 8)
    print("burst: 12 x 8 commands, all closed")
elif which == "long":
    sequential(1000, ["true"], 0, 0)
    print("long: 1000 commands, all closed")
else:
    sys.exit(f"unknown workload {which}")
