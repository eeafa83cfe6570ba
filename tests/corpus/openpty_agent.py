"""An agent that runs shell commands through os.openpty() + subprocess (the slave is the
child's stdio, the child gets its own session).

careful: close the slave after the spawn, read until EOF/EIO, wait, close the master.
leaky:   the same, but every master is kept.
The loop is corpus_agent.py's."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus_agent  # noqa: E402


def spawn(argv):
    m, s = os.openpty()
    p = subprocess.Popen(argv, stdin=s, stdout=s, stderr=s, start_new_session=True)
    os.close(s)
    return m, p.wait


corpus_agent.run("os.openpty", spawn)
