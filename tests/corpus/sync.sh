# Sourced by the shell workloads: the test's two synchronisation points, through FIFOs in
# $CORPUS_SYNC, so that waiting starts no process (a `sleep` poll would add commands and
# processes to the traced tree while the test compares a snapshot with /proc).
#   corpus_wait_go:   with CORPUS_WAIT_GO=1, block until the test says go (pty-trace attached).
#   corpus_checkpoint: with CORPUS_PAUSE=1, block mid-way until the test has compared a
#                      snapshot with /proc.
# The test opens the FIFO for writing without blocking: that succeeds only once we are
# blocked reading it, so it knows we are waiting; then it writes one line.
corpus_wait_go() {
    if [ -n "${CORPUS_SYNC:-}" ] && [ "${CORPUS_WAIT_GO:-}" = 1 ]; then
        read -r _corpus_line < "$CORPUS_SYNC/go.fifo"
    fi
}
corpus_checkpoint() {
    if [ -n "${CORPUS_SYNC:-}" ] && [ "${CORPUS_PAUSE:-}" = 1 ]; then
        read -r _corpus_line < "$CORPUS_SYNC/pause.fifo"
    fi
}
