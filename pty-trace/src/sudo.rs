//! Who ran `sudo pty-trace`: output files are handed to that user and the `--on-rotate` hook
//! runs as that user, never as root. One reading of `SUDO_UID`/`SUDO_GID` for both.

/// `(uid, gid)` of the user who invoked sudo, when this process runs as root under sudo.
/// `None` when not root (nothing to hand back) or when either variable is missing or not a
/// number (half an identity is not used).
pub fn invoking_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    parse_ids(std::env::var("SUDO_UID").ok().as_deref(), std::env::var("SUDO_GID").ok().as_deref())
}

/// Both ids, or none.
fn parse_ids(uid: Option<&str>, gid: Option<&str>) -> Option<(u32, u32)> {
    Some((uid?.trim().parse().ok()?, gid?.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ids_or_none() {
        assert_eq!(parse_ids(Some("1000"), Some("1001")), Some((1000, 1001)));
        assert_eq!(parse_ids(Some("1000"), None), None);
        assert_eq!(parse_ids(None, Some("1000")), None);
        assert_eq!(parse_ids(Some("x"), Some("1000")), None);
        assert_eq!(parse_ids(Some("-1"), Some("1000")), None);
    }
}
