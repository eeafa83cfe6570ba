//! Opening a path given on the command line for writing, as root, without being tricked into
//! overwriting or giving away someone else's file.
//!
//! pty-trace runs as root next to directories other users can write (/tmp, their homes). A
//! path there may be a symlink planted to make root truncate `/etc/shadow`, a hard link to it,
//! or a file someone else owns and would read. So, for `--jsonl` and `--child-output`:
//!
//! - a new file is created with `O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600, and handed (`fchown`,
//!   on the fd) to the user who ran sudo;
//! - an existing path is opened with `O_NOFOLLOW` (a symlink is refused with one line) and
//!   checked on the fd: a regular file must have one link and belong to us (root or the sudo
//!   user); it keeps its owner, is truncated, and made 0600 if the sudo user owns it;
//! - a FIFO, a terminal or /dev/null is a stream: written, never truncated, chowned or chmodded;
//!   any other device, a directory or a socket is refused.

use std::{
    fs::File,
    os::{
        fd::{AsRawFd, FromRawFd},
        unix::{ffi::OsStrExt, fs::MetadataExt},
    },
    path::{Path, PathBuf},
};

use crate::error::os_error_text;

/// An opened output.
#[derive(Debug)]
pub struct OutputFile {
    pub file: File,
    pub path: PathBuf,
    /// A regular file (which can be truncated back to its last whole line on a write error),
    /// not a FIFO or a terminal.
    pub regular: bool,
}

/// `/dev/null`'s device number (1:3 on Linux).
const DEV_NULL: (u32, u32) = (1, 3);

/// Opens `path` for writing as described in the module doc; `what` names it in errors
/// ("JSONL file", "child output file").
pub fn open_output(path: &Path, what: &str) -> Result<OutputFile, String> {
    open_output_with(path, what, false)
}

/// [`open_output`] for a log kept across runs (`watch --jsonl-dir`): an existing file passes the
/// same checks but is appended to, not truncated.
pub fn open_output_appending(path: &Path, what: &str) -> Result<OutputFile, String> {
    open_output_with(path, what, true)
}

fn open_output_with(path: &Path, what: &str, append: bool) -> Result<OutputFile, String> {
    let shown = path.display();
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{what} {shown:?}: the path contains a NUL byte"))?;
    let flags = libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY | if append { libc::O_APPEND } else { 0 };
    // SAFETY: a valid NUL-terminated path; the fd returned is owned below.
    let fd = unsafe { libc::open(cpath.as_ptr(), flags | libc::O_CREAT | libc::O_EXCL, 0o600 as libc::c_uint) };
    if fd >= 0 {
        // SAFETY: fd was just opened and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        // The umask may have taken bits away, never added; fchmod makes it exactly 0600.
        // SAFETY: plain syscalls on an fd we own.
        unsafe { libc::fchmod(file.as_raw_fd(), 0o600) };
        if let Some((uid, gid)) = crate::sudo::invoking_user() {
            // SAFETY: as above. By fd: the path may have changed since the open.
            if unsafe { libc::fchown(file.as_raw_fd(), uid, gid) } != 0 {
                let e = std::io::Error::last_os_error();
                return Err(format!("cannot hand {what} {shown} to uid {uid}: {}", os_error_text(&e)));
            }
        }
        return Ok(OutputFile { file, path: path.to_path_buf(), regular: true });
    }
    let created = std::io::Error::last_os_error();
    if created.raw_os_error() != Some(libc::EEXIST) {
        return Err(open_error(what, path, &created));
    }
    // It exists. Opened without O_TRUNC: it is checked on the fd before anything is changed.
    // SAFETY: as above.
    let fd = unsafe { libc::open(cpath.as_ptr(), flags) };
    if fd < 0 {
        return Err(open_error(what, path, &std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    let md = file.metadata().map_err(|e| format!("cannot stat {what} {shown}: {}", os_error_text(&e)))?;
    let ft = md.file_type();
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        return Ok(OutputFile { file, path: path.to_path_buf(), regular: false });
    }
    if ft.is_char_device() {
        let dev = (libc::major(md.rdev()), libc::minor(md.rdev()));
        // SAFETY: isatty on an fd we own.
        if dev == DEV_NULL || unsafe { libc::isatty(file.as_raw_fd()) } == 1 {
            return Ok(OutputFile { file, path: path.to_path_buf(), regular: false });
        }
        return Err(format!("refusing to write {what} to {shown}: it is a device (give a regular file, a FIFO, a terminal or -)"));
    }
    if !ft.is_file() {
        return Err(format!("refusing to write {what} to {shown}: not a regular file"));
    }
    if md.nlink() > 1 {
        return Err(format!(
            "refusing to write {what} to {shown}: it has {} hard links (another name for the same file); remove it or choose another path",
            md.nlink()
        ));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let person = crate::sudo::invoking_user().map(|(u, _)| u);
    if md.uid() != me && Some(md.uid()) != person {
        return Err(format!(
            "refusing to overwrite {what} {shown}: it belongs to uid {}, not to you; remove it or choose another path",
            md.uid()
        ));
    }
    if !append {
        file.set_len(0).map_err(|e| format!("cannot truncate {what} {shown}: {}", os_error_text(&e)))?;
    }
    if Some(md.uid()) == person || (person.is_none() && md.uid() == me) {
        // SAFETY: fchmod on an fd we own.
        unsafe { libc::fchmod(file.as_raw_fd(), 0o600) };
    }
    Ok(OutputFile { file, path: path.to_path_buf(), regular: true })
}

/// `watch --jsonl-dir DIR`: a real directory (not a symlink), owned by root or by the user who
/// ran sudo, that no one else can write. pty-trace renames and creates files in it as root at
/// every rotation: in a directory others can write, one of them could put a link or a FIFO
/// where the next file is created.
pub fn check_log_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let shown = dir.display();
    let md = std::fs::symlink_metadata(dir).map_err(|e| format!("--jsonl-dir {shown}: {}", os_error_text(&e)))?;
    if md.file_type().is_symlink() {
        return Err(format!("--jsonl-dir {shown}: is a symbolic link (pty-trace never follows one when it writes); give the real path"));
    }
    if !md.is_dir() {
        return Err(format!("--jsonl-dir {shown}: not a directory"));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let person = crate::sudo::invoking_user().map(|(u, _)| u);
    if md.uid() != me && md.uid() != 0 && Some(md.uid()) != person {
        return Err(format!("--jsonl-dir {shown}: belongs to uid {}, not to root or you; choose a directory of yours", md.uid()));
    }
    if md.mode() & 0o022 != 0 {
        return Err(format!(
            "--jsonl-dir {shown}: others can write to it (mode {:o}); use a directory only its owner can write (chmod go-w, or e.g. /var/log/pty-trace)",
            md.mode() & 0o7777
        ));
    }
    Ok(())
}

fn open_error(what: &str, path: &Path, e: &std::io::Error) -> String {
    let shown = path.display();
    match e.raw_os_error() {
        Some(libc::ELOOP) => format!(
            "refusing to write {what} to {shown}: it is a symbolic link (pty-trace never follows one when it writes); give the real path"
        ),
        Some(libc::ENXIO) => format!("cannot open {what} {shown}: it is a socket or a FIFO nobody reads"),
        _ => format!("cannot create {what} {shown}: {}", os_error_text(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pty-trace-safe-open-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_log_dir_must_be_real_and_only_ours_to_write() {
        let d = dir("logdir");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(check_log_dir(&d), Ok(()));
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(check_log_dir(&d).unwrap_err().contains("others can write to it (mode 1777)"));
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = d.with_extension("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(check_log_dir(&link).unwrap_err().contains("is a symbolic link"));
        assert!(check_log_dir(&d.join("missing")).unwrap_err().starts_with("--jsonl-dir "));
        let file = d.join("f");
        std::fs::write(&file, "").unwrap();
        assert!(check_log_dir(&file).unwrap_err().contains("not a directory"));
        let _ = std::fs::remove_file(&link);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn creates_a_private_file_and_truncates_our_own() {
        let d = dir("create");
        let p = d.join("out.jsonl");
        let o = open_output(&p, "JSONL file").unwrap();
        assert!(o.regular);
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        drop(o);
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = open_output(&p, "JSONL file").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0, "truncated");
        drop(o);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_symlinks_and_hard_links_and_leaves_the_target_alone() {
        let d = dir("links");
        let precious = d.join("precious");
        std::fs::write(&precious, "precious").unwrap();
        let sym = d.join("sym.jsonl");
        std::os::unix::fs::symlink(&precious, &sym).unwrap();
        let e = open_output(&sym, "JSONL file").unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
        let dangling = d.join("dangling.jsonl");
        std::os::unix::fs::symlink(d.join("nothing"), &dangling).unwrap();
        assert!(open_output(&dangling, "JSONL file").unwrap_err().contains("symbolic link"));
        assert!(!d.join("nothing").exists(), "a dangling link's target is not created");
        let hard = d.join("hard.jsonl");
        std::fs::hard_link(&precious, &hard).unwrap();
        assert!(open_output(&hard, "JSONL file").unwrap_err().contains("hard links"));
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "precious");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn streams_and_devices() {
        let o = open_output(Path::new("/dev/null"), "JSONL file").unwrap();
        assert!(!o.regular);
        let e = open_output(Path::new("/dev/zero"), "JSONL file").unwrap_err();
        assert!(e.contains("is a device"), "{e}");
        let e = open_output(Path::new("/"), "JSONL file").unwrap_err();
        assert!(e.contains("cannot create JSONL file /"), "{e}");
    }
}
