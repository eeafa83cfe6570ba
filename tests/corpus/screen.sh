#!/bin/bash
# A GNU screen server (SCREENDIR in $CORPUS_SYNC, session "corpus", no screenrc) whose
# 5 windows are opened, used and closed while it is traced. Healthy.
#   screen.sh server   start the server detached (one window), write its pid to server.pid
#   screen.sh drive    open 5 windows, run a command in each, checkpoint, close them
#   screen.sh stop     quit the server (it exits: the root of an attach session)
#   screen.sh all      server, drive, stop (the run workload)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/sync.sh"
W=${CORPUS_SYNC:?CORPUS_SYNC must name the scratch dir}
export SCREENDIR=$W/screens
mkdir -p -m 700 "$SCREENDIR"
unset STY
SHELL_CMD=(bash --norc --noprofile)
s() { screen -c /dev/null -S corpus "$@"; }

window_list() { s -Q windows 2>/dev/null || true; }
wait_windows() { # wait until the session has $1 windows (at most 10 s)
    for _ in $(seq 200); do [ "$(count_windows)" = "$1" ] && return 0; sleep 0.05; done
    echo "screen: windows are '$(window_list)', want $1" >&2; return 1
}
# `-Q windows` prints e.g. "0 bash  1-$ bash  2 bash": count the window numbers.
count_windows() { window_list | tr -s ' ' '\n' | grep -cE '^[0-9]+([-*$!@Z&]*)?$' || true; }

server() {
    s -dm "${SHELL_CMD[@]}"
    for _ in $(seq 200); do
        sock=$(ls "$SCREENDIR" 2>/dev/null | grep '\.corpus$' || true)
        [ -n "$sock" ] && break
        sleep 0.05
    done
    [ -n "$sock" ] || { echo "screen: no socket in $SCREENDIR" >&2; exit 1; }
    echo "${sock%%.*}" > "$W/server.pid"
    wait_windows 1
}

drive() {
    for i in 1 2 3 4 5; do s -X screen -t "w$i" "$i" "${SHELL_CMD[@]}"; done
    wait_windows 6
    for i in 1 2 3 4 5; do s -p "$i" -X stuff "echo window $i; ls / > /dev/null
"; done
    for i in 1 2 3 4 5; do
        for _ in $(seq 200); do
            rm -f "$W/hc.$i"
            s -p "$i" -X hardcopy "$W/hc.$i"
            for _ in $(seq 20); do [ -e "$W/hc.$i" ] && break; sleep 0.02; done
            grep -q "^window $i" "$W/hc.$i" 2>/dev/null && break
            sleep 0.05
        done
    done
    corpus_checkpoint
    for i in 1 2 3; do s -p "$i" -X stuff "exit
"; done
    for i in 4 5; do s -p "$i" -X kill; done
    wait_windows 1
}

stop() { s -X quit; }

case "${1:-}" in
    server) server ;;
    drive) drive ;;
    stop) stop ;;
    all) server; drive; stop ;;
    *) echo "usage: $0 server|drive|stop|all" >&2; exit 2 ;;
esac
