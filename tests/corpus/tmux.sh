#!/bin/bash
# A tmux server (private socket: TMUX_TMPDIR in $CORPUS_SYNC, -L corpus, no config) whose
# 5 windows are opened, used and closed while it is traced. Healthy: tmux closes a pane's
# master when the pane goes.
#   tmux.sh server   start the server (one window), write its pid to $CORPUS_SYNC/server.pid
#   tmux.sh drive    open 5 windows, run a command in each, checkpoint, close them
#   tmux.sh stop     kill the server (it exits: the root of an attach session)
#   tmux.sh all      server, drive, stop (the run workload)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/sync.sh"
W=${CORPUS_SYNC:?CORPUS_SYNC must name the scratch dir}
export TMUX_TMPDIR=$W
unset TMUX
SHELL_CMD="bash --norc --noprofile"
t() { tmux -L corpus -f /dev/null "$@"; }

windows() { t list-windows -t main -F '#{window_index}' | wc -l; }
wait_windows() { # wait until the session has $1 windows (at most 10 s)
    for _ in $(seq 200); do [ "$(windows)" = "$1" ] && return 0; sleep 0.05; done
    echo "tmux: still $(windows) windows, want $1" >&2; return 1
}

server() {
    t new-session -d -s main -x 100 -y 30 "$SHELL_CMD"
    t display-message -p -t main '#{pid}' > "$W/server.pid"
}

drive() {
    for i in 1 2 3 4 5; do t new-window -d -t "main:$i" "$SHELL_CMD"; done
    wait_windows 6
    for i in 1 2 3 4 5; do t send-keys -t "main:$i" "echo window $i; ls / > /dev/null" Enter; done
    for i in 1 2 3 4 5; do
        for _ in $(seq 200); do t capture-pane -p -t "main:$i" | grep -q "^window $i" && break; sleep 0.05; done
    done
    corpus_checkpoint
    for i in 1 2 3; do t send-keys -t "main:$i" "exit" Enter; done
    for i in 4 5; do t kill-window -t "main:$i"; done
    wait_windows 1
}

stop() { t kill-server; }

case "${1:-}" in
    server) server ;;
    drive) drive ;;
    stop) stop ;;
    all) server; drive; stop ;;
    *) echo "usage: $0 server|drive|stop|all" >&2; exit 2 ;;
esac
