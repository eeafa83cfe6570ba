// An agent that runs shell commands through node-pty (the real package, pinned in
// package.json), like a coding agent's terminal tool.
//
// careful: one `bash -c CMD` per command; wait for onExit (node-pty closes the master after
//          the child exits and the output is drained); a command that outlives its timeout
//          is killed with pty.kill(); every IPty is dropped.
// leaky:   every command hangs at a y/N prompt; the IPty is kept and never killed: one PTY
//          (and one blocked bash) left per command until the agent exits.
// With CORPUS_PAUSE=1 the middle command is ../checkpoint.sh (see ../sync.sh); with
// CORPUS_WAIT_GO=1 the agent first waits for the test's go.
'use strict';
const fs = require('fs');
const path = require('path');
const pty = require('node-pty');

const variant = process.argv[2];
if (variant !== 'careful' && variant !== 'leaky') throw new Error(`variant: ${variant}`);
const N = 14;
const TIMEOUT_MS = 400;
const sync = process.env.CORPUS_SYNC;
const checkpointSh = path.join(__dirname, '..', 'checkpoint.sh');
const pausing = !!sync && process.env.CORPUS_PAUSE === '1';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Blocks (the whole event loop: nothing else to do) until the test writes to the FIFO.
function waitFifo(name) {
  fs.readFileSync(path.join(sync, name));
}

function commandFor(i) {
  if (i === Math.floor(N / 2) && pausing) return ['sh', [checkpointSh]];
  if (variant === 'leaky') return ['bash', ['-c', `read -p 'Apply change ${i}? y/N ' a; echo $a`]];
  // Careful: one command in five outlives the timeout and is killed.
  if (i % 5 === 4) return ['bash', ['-c', `echo slow ${i}; sleep 30`]];
  return ['bash', ['-c', `echo step ${i}; ls / > /dev/null`]];
}

function spawn(file, args) {
  return pty.spawn(file, args, { name: 'xterm', cols: 80, rows: 24, cwd: process.cwd(), env: process.env });
}

// Runs one command to its end (killing it after TIMEOUT_MS, unless it is the checkpoint).
function runCareful(file, args, isCheckpoint) {
  return new Promise((resolve) => {
    const term = spawn(file, args);
    let out = '';
    const data = term.onData((d) => { out += d; });
    const timer = isCheckpoint ? null : setTimeout(() => term.kill(), TIMEOUT_MS);
    const exit = term.onExit(({ exitCode, signal }) => {
      if (timer) clearTimeout(timer);
      data.dispose();
      exit.dispose();
      resolve({ exitCode, signal, out });
    });
  });
}

// Starts one command and returns once it shows its prompt; the IPty is kept, never killed.
function runLeaky(file, args, kept) {
  return new Promise((resolve) => {
    const term = spawn(file, args);
    kept.push(term);
    let out = '';
    const data = term.onData((d) => {
      out += d;
      if (out.includes('y/N')) { data.dispose(); resolve(); }
    });
  });
}

async function main() {
  if (sync && process.env.CORPUS_WAIT_GO === '1') waitFifo('go.fifo');
  const kept = [];
  for (let i = 0; i < N; i++) {
    const [file, args] = commandFor(i);
    const isCheckpoint = file === 'sh';
    if (variant === 'careful' || isCheckpoint) {
      await runCareful(file, args, isCheckpoint);
    } else {
      await runLeaky(file, args, kept);
    }
    await sleep(100);
  }
  console.log(`node-pty ${variant}: ${N} commands, ${kept.length} IPty kept`);
  // The kept PTYs would keep the event loop alive: the agent is done, it exits (the kernel
  // closes the masters; the prompts get SIGHUP).
  process.exit(0);
}

main();
