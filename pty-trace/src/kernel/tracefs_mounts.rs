//! Parsing the mount table for tracefs: pure std, no crate dependencies, because `xtask`
//! (which mounts tracefs during setup, before pty-trace is built) includes this file by path.
//! One parser for both.

use std::path::{Path, PathBuf};

pub const TRACEFS_DEFAULT: &str = "/sys/kernel/tracing";
/// Older distributions only have tracefs under debugfs (auto-mounted there since Linux 4.1).
pub const TRACEFS_UNDER_DEBUGFS: &str = "/sys/kernel/debug/tracing";

/// Mount points of every tracefs in /proc/mounts content, in file order, without duplicates.
pub fn parse_tracefs_mounts(mounts: &str) -> Vec<PathBuf> {
    parse_mounts_of_type(mounts, "tracefs")
}

pub fn parse_mounts_of_type(mounts: &str, fstype: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    for line in mounts.lines() {
        // "source mountpoint fstype options dump pass"; anything shorter is not a mount line.
        let mut fields = line.split_whitespace();
        let (Some(_src), Some(mnt), Some(ty)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if ty != fstype {
            continue;
        }
        let path = PathBuf::from(unescape_mount_field(mnt));
        if !found.contains(&path) {
            found.push(path);
        }
    }
    found
}

/// The kernel writes space, tab, newline and backslash in mount points as \040, \011, \012
/// and \134. Anything that is not such an escape is kept as it is.
pub fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let oct = &bytes[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = u32::from(oct[0] - b'0') * 64
                    + u32::from(oct[1] - b'0') * 8
                    + u32::from(oct[2] - b'0');
                if let Ok(b) = u8::try_from(v) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The standard location first, then the debugfs one, then whatever else is mounted.
pub fn choose_tracefs(mounts: &[PathBuf]) -> Option<PathBuf> {
    [TRACEFS_DEFAULT, TRACEFS_UNDER_DEBUGFS]
        .iter()
        .map(Path::new)
        .find(|want| mounts.iter().any(|m| m == want))
        .map(Path::to_path_buf)
        .or_else(|| mounts.first().cloned())
}


#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE_MOUNTS: &str = "\
proc /proc proc rw,relatime 0 0
sysfs /sys sysfs rw,relatime 0 0
debugfs /sys/kernel/debug debugfs rw,relatime 0 0
nodev /sys/kernel/tracing tracefs rw,relatime 0 0
tracefs /sys/kernel/debug/tracing tracefs rw,relatime 0 0
nodev /sys/kernel/tracing tracefs rw,relatime 0 0
";

    #[test]
    fn parses_tracefs_mounts_in_order_without_duplicates() {
        assert_eq!(
            parse_tracefs_mounts(SAMPLE_MOUNTS),
            vec![
                PathBuf::from("/sys/kernel/tracing"),
                PathBuf::from("/sys/kernel/debug/tracing"),
            ]
        );
        assert_eq!(
            parse_mounts_of_type(SAMPLE_MOUNTS, "debugfs"),
            vec![PathBuf::from("/sys/kernel/debug")]
        );
    }

    #[test]
    fn no_tracefs_and_garbage_lines_give_nothing() {
        let content = "\
proc /proc proc rw 0 0

garbage
two fields
tracefs
/dev/vda / ext4 rw 0 0
";
        assert!(parse_tracefs_mounts(content).is_empty());
        assert!(parse_tracefs_mounts("").is_empty());
        // A path component called tracefs is not the file system type.
        assert!(parse_tracefs_mounts("tmpfs /tracefs tmpfs rw 0 0\n").is_empty());
    }

    #[test]
    fn unescapes_mount_points() {
        let content = "nodev /mnt/my\\040trace\\134dir tracefs rw 0 0\n";
        assert_eq!(
            parse_tracefs_mounts(content),
            vec![PathBuf::from("/mnt/my trace\\dir")]
        );
        // Not an escape (too short, not octal, out of range): kept as written.
        assert_eq!(unescape_mount_field("a\\04"), "a\\04");
        assert_eq!(unescape_mount_field("a\\09x"), "a\\09x");
        assert_eq!(unescape_mount_field("a\\777"), "a\\777");
        assert_eq!(unescape_mount_field("end\\"), "end\\");
        assert_eq!(unescape_mount_field("tab\\011x"), "tab\tx");
    }

    #[test]
    fn prefers_the_standard_tracefs_location() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            choose_tracefs(&[p("/sys/kernel/debug/tracing"), p("/sys/kernel/tracing")]),
            Some(p("/sys/kernel/tracing"))
        );
        assert_eq!(
            choose_tracefs(&[p("/elsewhere"), p("/sys/kernel/debug/tracing")]),
            Some(p("/sys/kernel/debug/tracing"))
        );
        assert_eq!(choose_tracefs(&[p("/elsewhere")]), Some(p("/elsewhere")));
        assert_eq!(choose_tracefs(&[]), None);
    }
}
