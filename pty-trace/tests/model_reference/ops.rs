//! The random operations: `Op` (raw random fields, interpreted against the reference state),
//! the operation kinds with their weights, and the generators (a proptest strategy and a plain
//! seeded one).

use proptest::prelude::*;
use rand::{Rng, rngs::StdRng};

/// One random operation; its fields are interpreted against the current reference state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Op {
    pub(crate) code: u8,
    pub(crate) x: u32,
    pub(crate) y: u32,
    pub(crate) z: u32,
    pub(crate) b: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpKind {
    OpenPtmx,
    OpenPts,
    OpenFile,
    Close,
    Dup,
    Dup2,
    Dup3,
    FcntlDup,
    SetCloexec,
    Pipe,
    Single,
    Tiocgptn,
    Tiocgptpeer,
    CloseRange,
    Fork,
    ForkFiles,
    Thread,
    Exec,
    Exit,
    Unshare,
    /// A /proc scan of one process (after all events so far): nothing to correct.
    Scan,
    /// A /proc scan of one process taken now and delivered a few operations later, after
    /// events stamped after the scan started: the timing rules must explain every difference.
    LateScan,
}

/// Operation kinds with their weights.
pub(crate) const OPS: &[(OpKind, u8)] = &[
    (OpKind::OpenPtmx, 3),
    (OpKind::OpenPts, 2),
    (OpKind::OpenFile, 3),
    (OpKind::Close, 4),
    (OpKind::Dup, 2),
    (OpKind::Dup2, 2),
    (OpKind::Dup3, 1),
    (OpKind::FcntlDup, 1),
    (OpKind::SetCloexec, 1),
    (OpKind::Pipe, 1),
    (OpKind::Single, 2),
    (OpKind::Tiocgptn, 2),
    (OpKind::Tiocgptpeer, 2),
    (OpKind::CloseRange, 1),
    (OpKind::Fork, 2),
    (OpKind::ForkFiles, 1),
    (OpKind::Thread, 1),
    (OpKind::Exec, 2),
    (OpKind::Exit, 2),
    (OpKind::Unshare, 1),
    (OpKind::Scan, 1),
    (OpKind::LateScan, 1),
];

pub(crate) fn op_kind(code: u8) -> OpKind {
    let total: u32 = OPS.iter().map(|o| o.1 as u32).sum();
    let mut c = code as u32 % total;
    for &(k, w) in OPS {
        if c < w as u32 {
            return k;
        }
        c -= w as u32;
    }
    unreachable!()
}

pub(crate) fn op_strategy() -> impl Strategy<Value = Op> {
    (
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(|(code, x, y, z, b)| Op { code, x, y, z, b })
}

pub(crate) fn random_op(rng: &mut StdRng) -> Op {
    Op {
        code: rng.r#gen(),
        x: rng.r#gen(),
        y: rng.r#gen(),
        z: rng.r#gen(),
        b: rng.r#gen(),
    }
}
