#!/bin/bash
# `script -q -c CMD /dev/null` 20 times, like a build tool that wants a TTY for its commands.
# Healthy: script closes its master when the command exits. With CORPUS_PAUSE=1 the 10th
# command is checkpoint.sh (script holds the master, the shell in it the slave).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/sync.sh"
corpus_wait_go
for i in $(seq 1 20); do
    if [ "$i" = 10 ] && [ "${CORPUS_PAUSE:-}" = 1 ]; then
        script -q -c "sh $HERE/checkpoint.sh" /dev/null
    else
        script -q -c "echo step $i; ls / > /dev/null" /dev/null
    fi
done
echo "script: 20 commands"
