"""An agent that runs shell commands through pty.fork().

careful: read until EOF/EIO, waitpid, close the master.
leaky:   the same, but every master is kept.
The loop is corpus_agent.py's."""
import os
import pty
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus_agent  # noqa: E402


def spawn(argv):
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    return fd, lambda: os.waitpid(pid, 0)


corpus_agent.run("pty.fork", spawn)
