//! The raw `bpf(BPF_PROG_LOAD)` syscall behind the `bpf-load` row: a hand-written
//! `union bpf_attr` prefix and `struct bpf_insn`, and the load of a trivial program.
//!
//! Only the syscall lives here, with std + libc, so that it works where the real BPF object
//! does not load. What a failure means (the row's detail and fix) is decided in `checks.rs`.

use std::io;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;

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

/// Loads `r0 = 0; exit` as a socket filter and closes it again. This is the cheapest thing
/// that proves the kernel lets us load BPF at all.
pub(super) fn try_load_trivial_prog() -> io::Result<()> {
    let insns = [
        // BPF_ALU64 | BPF_MOV | BPF_K: r0 = 0
        BpfInsn {
            code: 0xb7,
            regs: 0,
            off: 0,
            imm: 0,
        },
        // BPF_JMP | BPF_EXIT
        BpfInsn {
            code: 0x95,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ];
    let license = c"GPL";
    let mut name = [0u8; 16];
    // A name makes the probe recognisable in `bpftool prog` if it ever lingers.
    let label = b"ptytrace_doctor";
    name[..label.len()].copy_from_slice(label);
    let attr = BpfProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        _zero: [0; 64],
    };
    // SAFETY: `attr` is a fully initialised bpf_attr prefix whose pointers (insns, license)
    // stay alive for the call; the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const BpfProgLoadAttr,
            std::mem::size_of::<BpfProgLoadAttr>() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // The program is unloaded once its only fd is closed. A valid fd always fits in c_int.
    if let Ok(fd) = libc::c_int::try_from(rc) {
        // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
        unsafe { libc::close(fd) };
    }
    Ok(())
}
