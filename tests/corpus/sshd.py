"""OpenSSH's sshd on a loopback port with a private configuration (host key, client key and
authorized_keys generated in $CORPUS_SYNC, UsePAM no, -D), and 3 interactive sessions
(pexpect driving `ssh -tt` with the key), each running a few commands and then exiting.
Healthy: sshd closes each session's PTY when the session ends.

  sshd.py setup    keys, config, a free high port (in $CORPUS_SYNC)
  sshd.py server   exec sshd -D (the root of an attach session; writes sshd.pid)
  sshd.py drive    the 3 sessions (with CORPUS_PAUSE=1 the 2nd pauses at the checkpoint)
  sshd.py all      setup, sshd as a child, drive, stop sshd (the run workload)"""
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pexpect  # noqa: E402

from corpus_sync import checkpoint  # noqa: E402

W = os.environ["CORPUS_SYNC"]
CONFIG = os.path.join(W, "sshd_config")
CLIENT_KEY = os.path.join(W, "client_ed25519")
PORT_FILE = os.path.join(W, "sshd.port")
PROMPT = "corpus-prompt> "


def setup():
    host_key = os.path.join(W, "host_ed25519")
    for key in (host_key, CLIENT_KEY):
        if not os.path.exists(key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    with open(CLIENT_KEY + ".pub") as f, open(os.path.join(W, "authorized_keys"), "w") as out:
        out.write(f.read())
    os.chmod(os.path.join(W, "authorized_keys"), 0o600)
    # A free high port (bound and released: a tiny race, fine on a test machine).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(PORT_FILE, "w") as f:
        f.write(str(port))
    with open(CONFIG, "w") as f:
        f.write(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {W}/sshd.pid
AuthorizedKeysFile {W}/authorized_keys
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
Banner none
Subsystem sftp internal-sftp
LogLevel ERROR
""")
    # sshd's privilege separation directory (Debian's init scripts create it).
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)


def server_argv():
    return ["/usr/sbin/sshd", "-D", "-e", "-f", CONFIG]


def wait_listening(timeout=10.0):
    """Waits until sshd listens, reading /proc/net/tcp (a probe connection would make sshd
    fork a child and log an error)."""
    port = int(open(PORT_FILE).read())
    want = f":{port:04X} "
    end = time.time() + timeout
    while time.time() < end:
        with open("/proc/net/tcp") as f:
            if any(want in line and line.split()[3] == "0A" for line in f):
                return port
        time.sleep(0.02)
    raise SystemExit(f"sshd is not listening on port {port}")


def session(port, n, pause):
    ssh = pexpect.spawn("ssh", ["-tt", "-F", "/dev/null", "-i", CLIENT_KEY, "-p", str(port),
                                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "root@127.0.0.1",
                                f"env PS1='{PROMPT}' bash --norc --noprofile -i"],
                        timeout=30, encoding="utf-8")
    ssh.expect_exact(PROMPT)
    for cmd in (f"echo session {n}", "tty", "ls / > /dev/null; echo listed", "id -u"):
        ssh.sendline(cmd)
        ssh.expect_exact(PROMPT)
    if pause:
        checkpoint()
    ssh.sendline("exit")
    ssh.expect(pexpect.EOF)
    ssh.close()


def drive():
    port = wait_listening()
    for n in range(3):
        session(port, n, n == 1)


which = sys.argv[1]
if which == "setup":
    setup()
elif which == "server":
    os.execv(server_argv()[0], server_argv())
elif which == "drive":
    drive()
elif which == "all":
    setup()
    sshd = subprocess.Popen(server_argv())
    try:
        drive()
    finally:
        sshd.send_signal(signal.SIGTERM)
        sshd.wait()
else:
    sys.exit(f"unknown step {which}")
