"""The test's two synchronisation points for the Python workloads (see sync.sh): FIFOs in
$CORPUS_SYNC, read with a blocking open/read, so that waiting starts no process."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKPOINT = os.path.join(HERE, "checkpoint.sh")


def _wait(name):
    with open(os.path.join(os.environ["CORPUS_SYNC"], name)) as f:
        f.readline()


def wait_go():
    """With CORPUS_WAIT_GO=1: block until the test says go (pty-trace has attached)."""
    if os.environ.get("CORPUS_SYNC") and os.environ.get("CORPUS_WAIT_GO") == "1":
        _wait("go.fifo")


def pausing():
    return bool(os.environ.get("CORPUS_SYNC")) and os.environ.get("CORPUS_PAUSE") == "1"


def checkpoint():
    """With CORPUS_PAUSE=1: block mid-way until the test has compared a snapshot with /proc."""
    if pausing():
        _wait("pause.fifo")


def checkpoint_command():
    """The argv of a command that blocks at the checkpoint (run it through a PTY), or None."""
    return ["sh", CHECKPOINT] if pausing() else None
