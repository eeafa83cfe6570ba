#!/bin/bash
# The shell session asciinema records: 20 commands (the 10th is the checkpoint, with
# CORPUS_PAUSE=1). With CORPUS_WAIT_GO=1 it first waits for the test's go (attach mode:
# asciinema, the root, is started before pty-trace attaches).
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/sync.sh"
corpus_wait_go
cd "${CORPUS_SYNC:-/tmp}"
echo "1 hello"; uname -a; date -u; pwd; ls -la / > /dev/null
seq 1 5; printf '%s\n' a b c | sort -r; echo $((6 * 7)); id -u
cat /proc/loadavg; corpus_checkpoint
echo "11 half-way"; ls /usr/bin | wc -l; head -c 64 /dev/urandom | od -An | head -2; true
grep -c . /etc/passwd; tput cols 2>/dev/null || echo 80; stty size; tty; env | wc -l
echo "20 done"
