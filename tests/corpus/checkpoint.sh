#!/bin/sh
# A command that blocks at the test's mid-way checkpoint (see sync.sh), then prints a line.
# Agents run it as one of their commands, through a PTY, so that the snapshot compared with
# /proc shows a master held by the agent and the slave held by this shell.
. "$(dirname "$0")/sync.sh"
echo "checkpoint $$"
corpus_checkpoint
echo "resumed"
