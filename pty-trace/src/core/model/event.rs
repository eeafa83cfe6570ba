//! Kernel events as the model consumes them, and their decoding from ring buffer bytes.
//!
//! One variant per `pty_trace_common::EventType`, with the same names. Decoding is pure and
//! total: a short or unknown record is an error value, never a panic.

use pty_trace_common::{
    EventHeader, EventType, ExecArgvEvent, ExecEvent, ExitEvent, ForkEvent, OpenEvent, ReceivedEvent,
    SyscallEvent, SyscallKind,
};

use super::reconcile::ObservedFd;

/// Who and when, common to all events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub tgid: u32,
    pub tid: u32,
    /// Session id the kernel had for `tgid` (0 when unknown).
    pub session: u32,
    /// CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Syscall {
        h: Header,
        kind: SyscallKind,
        ret: i64,
        args: [u64; 6],
        aux: [i32; 2],
        user_flags: u64,
    },
    Open {
        h: Header,
        kind: SyscallKind,
        ret: i64,
        dirfd: i64,
        flags: u64,
        path: String,
        /// The devpts instance at `/dev/pts` in the opener's mount namespace, for a PTY path:
        /// the kernel side does not know it, the session fills it in before applying the
        /// event (`None`: not a PTY path, or unknown).
        devpts: Option<crate::core::machine::DevId>,
    },
    Fork {
        h: Header,
        child: u32,
        /// `None` when the clone flags were not captured (clone entered before tracing).
        clone_flags: Option<u64>,
    },
    Exec {
        h: Header,
        old_tid: u32,
        filename: String,
    },
    ExecArgv {
        h: Header,
        argv: Vec<String>,
        truncated: bool,
    },
    Exit {
        h: Header,
    },
    /// fds a `recvmsg` installed (`SCM_RIGHTS`). The kernel side knows their numbers only:
    /// the session looks each one up in /proc as the event arrives (`seen`), before applying it.
    Received {
        h: Header,
        fds: Vec<ReceivedFd>,
        cloexec: bool,
        /// More fds came than the record holds: the rest are left to /proc reconciliation.
        truncated: bool,
    },
}

/// One received fd, and what /proc showed of it when the event was read (`None`: not looked
/// up, or already gone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedFd {
    pub fd: i32,
    pub seen: Option<ObservedFd>,
}

impl Event {
    /// The event as it may be printed (`PTY_TRACE_DEBUG_EVENTS`): argv redacted.
    pub fn redacted(&self) -> std::borrow::Cow<'_, Event> {
        match self {
            Event::ExecArgv { h, argv, truncated } => {
                std::borrow::Cow::Owned(Event::ExecArgv { h: *h, argv: crate::core::redact::redact_argv(argv), truncated: *truncated })
            }
            _ => std::borrow::Cow::Borrowed(self),
        }
    }

    pub fn header(&self) -> &Header {
        match self {
            Event::Syscall { h, .. }
            | Event::Open { h, .. }
            | Event::Fork { h, .. }
            | Event::Exec { h, .. }
            | Event::ExecArgv { h, .. }
            | Event::Received { h, .. }
            | Event::Exit { h } => h,
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("unknown event type {0}")]
    UnknownType(u32),
    #[error("{what} record of {got} bytes, expected {want}")]
    Truncated { what: &'static str, got: usize, want: usize },
    #[error("unknown syscall code {0}")]
    UnknownSyscall(u32),
}

fn read<T: Copy>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    let want = size_of::<T>();
    if bytes.len() < want {
        return Err(DecodeError::Truncated { what, got: bytes.len(), want });
    }
    // SAFETY: length checked; all these records are plain `#[repr(C)]` integers and byte
    // arrays for which any bit pattern is valid; read_unaligned copes with any alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

fn header(h: &EventHeader) -> Header {
    Header { tgid: h.tgid, tid: h.tid, session: h.session, ts_ns: h.ts_ns }
}

fn text(bytes: &[u8], len: u32) -> String {
    let n = (len as usize).min(bytes.len());
    let s = &bytes[..n];
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    String::from_utf8_lossy(&s[..end]).into_owned()
}

/// Decodes one ring buffer record.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    if bytes.len() < size_of::<EventHeader>() {
        return Err(DecodeError::Short(bytes.len()));
    }
    let eh: EventHeader = read(bytes, "header")?;
    let ty = EventType::from_u32(eh.event_type).ok_or(DecodeError::UnknownType(eh.event_type))?;
    let h = header(&eh);
    Ok(match ty {
        EventType::Syscall => {
            let e: SyscallEvent = read(bytes, "syscall")?;
            let kind = SyscallKind::from_u32(e.syscall).ok_or(DecodeError::UnknownSyscall(e.syscall))?;
            Event::Syscall { h, kind, ret: e.ret, args: e.args, aux: e.aux, user_flags: e.user_flags }
        }
        EventType::Open => {
            let e: OpenEvent = read(bytes, "open")?;
            let kind = SyscallKind::from_u32(e.syscall).ok_or(DecodeError::UnknownSyscall(e.syscall))?;
            Event::Open {
                h,
                kind,
                ret: e.ret,
                dirfd: e.dirfd,
                flags: e.flags,
                path: text(&e.path, e.path_len),
                devpts: None,
            }
        }
        EventType::Fork => {
            let e: ForkEvent = read(bytes, "fork")?;
            Event::Fork {
                h,
                child: e.child_tid,
                clone_flags: (e.flags_known != 0).then_some(e.clone_flags),
            }
        }
        EventType::Exec => {
            let e: ExecEvent = read(bytes, "exec")?;
            Event::Exec { h, old_tid: e.old_tid, filename: text(&e.filename, e.filename_len) }
        }
        EventType::ExecArgv => {
            let e: ExecArgvEvent = read(bytes, "exec_argv")?;
            let n = (e.len as usize).min(e.argv.len());
            let argv = e.argv[..n]
                .split(|&b| b == 0)
                .take(e.argc as usize)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Event::ExecArgv { h, argv, truncated: e.truncated != 0 }
        }
        EventType::Exit => {
            let _: ExitEvent = read(bytes, "exit")?;
            Event::Exit { h }
        }
        EventType::Received => {
            let e: ReceivedEvent = read(bytes, "received")?;
            let n = (e.count as usize).min(e.fds.len());
            Event::Received {
                h,
                fds: e.fds[..n].iter().map(|&fd| ReceivedFd { fd, seen: None }).collect(),
                cloexec: e.cloexec != 0,
                truncated: e.truncated != 0,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pty_trace_common::{ARGV_CAPACITY, PATH_CAPACITY};

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: test-only view of a plain repr(C) value.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    fn eh(t: EventType) -> EventHeader {
        EventHeader { event_type: t as u32, tgid: 10, tid: 11, session: 7, ts_ns: 99 }
    }

    #[test]
    fn decodes_received_fds_up_to_the_count() {
        let mut fds = [-1i32; pty_trace_common::RECEIVED_CAPACITY];
        fds[..3].copy_from_slice(&[7, 8, 9]);
        let e = ReceivedEvent { header: eh(EventType::Received), syscall: SyscallKind::RecvMsg as u32, count: 2, truncated: 0, cloexec: 1, fds };
        let Event::Received { fds, cloexec, truncated, .. } = decode(&bytes_of(&e)).unwrap() else { panic!("not received") };
        assert_eq!(fds.iter().map(|f| f.fd).collect::<Vec<_>>(), vec![7, 8]);
        assert!(cloexec && !truncated);
        // A count past the array is cut to it, never a panic.
        let e = ReceivedEvent { count: 99, truncated: 1, ..e };
        let Event::Received { fds, truncated, .. } = decode(&bytes_of(&e)).unwrap() else { panic!("not received") };
        assert_eq!(fds.len(), pty_trace_common::RECEIVED_CAPACITY);
        assert!(truncated);
    }

    #[test]
    fn decodes_open_with_path() {
        let mut path = [0u8; PATH_CAPACITY];
        path[..9].copy_from_slice(b"/dev/ptmx");
        let e = OpenEvent {
            header: eh(EventType::Open),
            syscall: SyscallKind::OpenAt as u32,
            path_len: 9,
            ret: 5,
            dirfd: -100,
            flags: 2,
            path,
        };
        let ev = decode(&bytes_of(&e)).unwrap();
        assert_eq!(
            ev,
            Event::Open {
                h: Header { tgid: 10, tid: 11, session: 7, ts_ns: 99 },
                kind: SyscallKind::OpenAt,
                ret: 5,
                dirfd: -100,
                flags: 2,
                path: "/dev/ptmx".into(),
                devpts: None,
            }
        );
    }

    #[test]
    fn the_printed_form_of_an_exec_has_its_argv_redacted() {
        let h = Header { tgid: 1, tid: 1, session: 1, ts_ns: 1 };
        let argv = ["mysql", "-pSECRET1"].iter().map(|s| s.to_string()).collect();
        let text = format!("{:?}", Event::ExecArgv { h, argv, truncated: false }.redacted());
        assert!(!text.contains("SECRET1") && text.contains("-p<redacted>"), "{text}");
        let exit = Event::Exit { h };
        assert_eq!(format!("{:?}", exit.redacted()), format!("{exit:?}"));
    }

    #[test]
    fn decodes_argv() {
        let mut argv = [0u8; ARGV_CAPACITY];
        argv[..12].copy_from_slice(b"sh\0-c\0true\0\0");
        let e = ExecArgvEvent { header: eh(EventType::ExecArgv), argc: 3, len: 11, truncated: 0, _pad: 0, argv };
        match decode(&bytes_of(&e)).unwrap() {
            Event::ExecArgv { argv, truncated, .. } => {
                assert_eq!(argv, vec!["sh", "-c", "true"]);
                assert!(!truncated);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rejects_bad_records_without_panicking() {
        assert_eq!(decode(&[1, 2, 3]), Err(DecodeError::Short(3)));
        let mut b = bytes_of(&eh(EventType::Syscall));
        assert!(matches!(decode(&b), Err(DecodeError::Truncated { .. })));
        b[0] = 77;
        assert_eq!(decode(&b), Err(DecodeError::UnknownType(77)));
        let e = ExitEvent { header: eh(EventType::Exit) };
        assert!(matches!(decode(&bytes_of(&e)), Ok(Event::Exit { .. })));
    }
}
