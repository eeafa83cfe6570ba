//! The events a simulated session sends, for the core's tests that drive a model the way the
//! kernel would (`verdict_tests`, `model::tests::bounded`): one vocabulary of events, while each
//! test keeps its own clock and sink (apply and score at once, or record for a replay).

use pty_trace_common::{SyscallKind as K, TIOCGPTN};

use super::model::{Event, Header};

const AT_FDCWD: i64 = -100;
const SIGCHLD: u64 = 17;

pub(crate) trait SessionEvents {
    /// The header of `pid`'s next event (it moves the clock).
    fn h(&mut self, pid: u32) -> Header;
    /// Delivers one event.
    fn emit(&mut self, ev: Event);
    /// A pid for a new process.
    fn new_pid(&mut self) -> u32;

    fn open(&mut self, pid: u32, fd: i32, path: &str, flags: u64) {
        let h = self.h(pid);
        self.emit(Event::Open { h, kind: K::OpenAt, ret: fd as i64, dirfd: AT_FDCWD, flags, path: path.into(), devpts: None });
    }

    fn close(&mut self, pid: u32, fd: i32) {
        let h = self.h(pid);
        self.emit(Event::Syscall { h, kind: K::Close, ret: 0, args: [fd as u64, 0, 0, 0, 0, 0], aux: [-1, -1], user_flags: 0 });
    }

    /// `ioctl(fd, TIOCGPTN)` answering `index`: how the model learns a master's PTY.
    fn ptn(&mut self, pid: u32, fd: i32, index: i32) {
        let h = self.h(pid);
        self.emit(Event::Syscall { h, kind: K::Ioctl, ret: 0, args: [fd as u64, TIOCGPTN, 0x7ffd, 0, 0, 0], aux: [index, -1], user_flags: 0 });
    }

    /// `pid` execs `filename` with `argv`.
    fn exec(&mut self, pid: u32, argv: &[&str], filename: &str) {
        let h = self.h(pid);
        self.emit(Event::ExecArgv { h, argv: argv.iter().map(|s| s.to_string()).collect(), truncated: false });
        let h = self.h(pid);
        self.emit(Event::Exec { h, old_tid: pid, filename: filename.into() });
    }

    /// `parent` forks a child that execs `argv`; returns the child's pid.
    fn spawn(&mut self, parent: u32, argv: &[&str]) -> u32 {
        let child = self.new_pid();
        let h = self.h(parent);
        self.emit(Event::Fork { h, child, clone_flags: Some(SIGCHLD) });
        self.exec(child, argv, argv[0]);
        child
    }

    fn exit(&mut self, pid: u32) {
        let h = self.h(pid);
        self.emit(Event::Exit { h });
    }
}
