//! What this kernel's BPF can do, asked before the real programs load: the raw
//! `bpf(BPF_PROG_LOAD)` / `bpf(BPF_MAP_CREATE)` syscalls with a hand-written `union bpf_attr`
//! prefix and `struct bpf_insn` (std + libc only, so it works where the real object does not
//! load), and the features each backend needs ([`missing_for`]).
//!
//! Why probe first: a program that calls a helper the kernel lacks fails in the verifier with
//! a log of hundreds of lines (5.10 and `bpf_get_current_task_btf`); a probe turns that into
//! one line naming the kernel, the missing feature and the fix. The probes are those
//! `bpftool feature probe` makes: a two-instruction program calling the helper, judged by the
//! verifier's "invalid func"/"unknown func", and a one-page map of the type.

use std::io;

use crate::core::records::ProbeBackend;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
const BPF_PROG_TYPE_TRACEPOINT: u32 = 5;
const BPF_MAP_TYPE_RINGBUF: u32 = 27;

/// struct bpf_insn: the two register numbers share one byte (dst in the low nibble on
/// little-endian); both are 0 here so byte order does not matter.
#[repr(C)]
#[derive(Clone, Copy)]
struct BpfInsn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

/// The BPF_PROG_LOAD part of the kernel's `union bpf_attr`. The kernel accepts a shorter attr
/// than its own as long as the fields it knows come first; the tail stays zero.
#[repr(C)]
struct BpfProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    _zero: [u8; 64],
}

const _: () = assert!(std::mem::size_of::<BpfProgLoadAttr>() == 128);

/// The running kernel's release (`uname -r`), or "" if uname fails.
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain old data; all-zero is a valid value and uname only writes into it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return String::new();
    }
    // Read up to the NUL without trusting that there is one.
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Loads `r0 = 0; exit` as a socket filter and closes it again. This is the cheapest thing
/// that proves the kernel lets us load BPF at all.
pub fn try_load_trivial_prog() -> io::Result<()> {
    let insns = [
        // BPF_ALU64 | BPF_MOV | BPF_K: r0 = 0
        BpfInsn { code: 0xb7, regs: 0, off: 0, imm: 0 },
        // BPF_JMP | BPF_EXIT
        BpfInsn { code: 0x95, regs: 0, off: 0, imm: 0 },
    ];
    load_prog(BPF_PROG_TYPE_SOCKET_FILTER, &insns, None)
}

/// Loads a program of `prog_type` and closes it again; with `log`, the verifier's log is
/// written there (whatever the outcome).
fn load_prog(prog_type: u32, insns: &[BpfInsn], log: Option<&mut [u8]>) -> io::Result<()> {
    let license = c"GPL";
    let mut name = [0u8; 16];
    // A name makes the probe recognisable in `bpftool prog` if it ever lingers.
    let label = b"ptytrace_probe";
    name[..label.len()].copy_from_slice(label);
    let (log_level, log_size, log_buf) = match log {
        Some(buf) => (1, buf.len() as u32, buf.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let attr = BpfProgLoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        _zero: [0; 64],
    };
    // SAFETY: `attr` is a fully initialised bpf_attr prefix whose pointers (insns, license,
    // the log buffer) stay alive for the call; the kernel reads the first two and writes at
    // most `log_size` bytes into the third.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const BpfProgLoadAttr,
            std::mem::size_of::<BpfProgLoadAttr>() as libc::c_uint,
        )
    };
    close_result(rc)
}

/// The fd of a successful `bpf()` closed (the object goes with its only fd), or the error.
fn close_result(rc: libc::c_long) -> io::Result<()> {
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if let Ok(fd) = libc::c_int::try_from(rc) {
        // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// The BPF_MAP_CREATE part of `union bpf_attr`.
#[repr(C)]
struct BpfMapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    _zero: [u8; 108],
}

const _: () = assert!(std::mem::size_of::<BpfMapCreateAttr>() == 128);

/// Whether the kernel creates a BPF ring buffer (BPF_MAP_TYPE_RINGBUF, 5.8).
pub fn ring_buffer_supported() -> io::Result<bool> {
    let attr = BpfMapCreateAttr { map_type: BPF_MAP_TYPE_RINGBUF, key_size: 0, value_size: 0, max_entries: 4096, map_flags: 0, _zero: [0; 108] };
    // SAFETY: a fully initialised bpf_attr prefix without pointers.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_MAP_CREATE, &attr as *const BpfMapCreateAttr, std::mem::size_of::<BpfMapCreateAttr>() as libc::c_uint)
    };
    match close_result(rc) {
        Ok(()) => Ok(true),
        // An unknown map type is EINVAL; EPERM is a permission problem, not an answer.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A BPF helper the programs call, by its number in `enum bpf_func_id` (stable: new helpers
/// only ever get new numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Helper {
    pub id: i32,
    pub name: &'static str,
    /// The first Linux release that has it.
    pub since: &'static str,
}

pub const RINGBUF_RESERVE: Helper = Helper { id: 131, name: "bpf_ringbuf_reserve", since: "5.8" };
pub const PROBE_READ_KERNEL: Helper = Helper { id: 113, name: "bpf_probe_read_kernel", since: "5.5" };
pub const GET_CURRENT_TASK_BTF: Helper = Helper { id: 158, name: "bpf_get_current_task_btf", since: "5.11" };
pub const TASK_PT_REGS: Helper = Helper { id: 175, name: "bpf_task_pt_regs", since: "5.15" };

/// Whether programs of type tracepoint may call `helper`: a `call helper; exit` program is
/// loaded and the verifier's log read. The verifier may refuse the program for other reasons
/// (the helper's arguments are not set up); only "invalid func"/"unknown func" means the
/// helper is missing, as in `bpftool feature probe`.
pub fn helper_supported(helper: Helper) -> io::Result<bool> {
    let insns = [
        // BPF_JMP | BPF_CALL, imm = helper id
        BpfInsn { code: 0x85, regs: 0, off: 0, imm: helper.id },
        BpfInsn { code: 0xb7, regs: 0, off: 0, imm: 0 },
        BpfInsn { code: 0x95, regs: 0, off: 0, imm: 0 },
    ];
    let mut log = vec![0u8; 4096];
    let result = load_prog(BPF_PROG_TYPE_TRACEPOINT, &insns, Some(&mut log));
    let text = String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(log.len())]).into_owned();
    match result {
        Ok(()) => Ok(true),
        Err(_) if says_helper_missing(&text) => Ok(false),
        // EPERM: not allowed to load BPF at all, no answer about the helper. (The verifier
        // refuses with EACCES or EINVAL: the helper is there, its arguments are not.)
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Err(e),
        Err(_) => Ok(true),
    }
}

/// The verifier's words for a helper it does not know.
pub fn says_helper_missing(log: &str) -> bool {
    log.contains("invalid func ") || log.contains("unknown func ")
}

/// What this kernel lacks for `backend`, as one line naming the missing feature and the
/// release that brought it (empty when nothing is missing). Trampolines themselves are not
/// probed here: only loading and attaching the real programs answers that (some kernels have
/// the program type and refuse the attach).
pub fn missing_for(backend: ProbeBackend) -> io::Result<Vec<String>> {
    let mut missing = Vec::new();
    if !ring_buffer_supported()? {
        missing.push("the BPF ring buffer (Linux 5.8)".to_string());
    }
    let helpers: &[Helper] = match backend {
        ProbeBackend::Fentry => &[PROBE_READ_KERNEL, RINGBUF_RESERVE],
        ProbeBackend::Tracepoint => &[PROBE_READ_KERNEL, RINGBUF_RESERVE, GET_CURRENT_TASK_BTF, TASK_PT_REGS],
    };
    for &h in helpers {
        if !helper_supported(h)? {
            missing.push(format!("the BPF helper {} (Linux {})", h.name, h.since));
        }
    }
    if backend == ProbeBackend::Fentry && !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        missing.push("kernel BTF, /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF=y)".to_string());
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_words_for_a_missing_helper() {
        // 5.10 on helper 158, and a newer kernel's wording.
        assert!(says_helper_missing("0: (85) call unknown#158\ninvalid func unknown#158\n"));
        assert!(says_helper_missing("unknown func bpf_task_pt_regs#175"));
        assert!(!says_helper_missing("R1 type=scalar expected=ptr_, trusted_ptr_, rcu_ptr_"));
        assert!(!says_helper_missing(""));
    }
}
