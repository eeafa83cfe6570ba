//! `cargo xtask setup`: makes a fresh Debian bookworm machine able to build, test and run
//! pty-trace, one step per function:
//! 1. Debian packages (the eBPF toolchain, the tools tests and benchmarks use, QEMU for vmtest),
//! 2. bpf-linker 0.13.0 built against Debian's LLVM 22,
//! 3. tracefs mounted (tracepoints attach through it),
//! 4. the corpus tests' packages: pinned PyPI packages in the machine's `python3`, and node-pty
//!    (`npm ci` in `tests/corpus/node`, built against the local Node headers).
//!
//! Each step checks first and acts only when something is missing, so a warm run takes a few
//! milliseconds and prints a single summary line. The decisions are pure functions over the
//! text the checks read, unit-tested below.

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, Result, bail};

use crate::util::{self, cargo_bin_dir, find_program, root_command, run_checked};

/// pty-trace's own mount-table parser (pure std), shared by path: setup runs before pty-trace
/// can be built, so xtask cannot depend on the crate.
#[path = "../../pty-trace/src/kernel/tracefs_mounts.rs"]
#[allow(dead_code)] // xtask uses two of its functions
mod tracefs_mounts;

/// Debian packages: `rustc-web`/`cargo-web`/`rust-web-src` are a rustc with its library source
/// (needed for `-Z build-std=core`), `llvm-22-dev` is what bpf-linker links against; the rest are
/// used by the end-to-end tests and the benchmarks (`screen`, `openssh-*`, `bsdutils`'s
/// `script` and `tmux` by the corpus tests, `g++`/`make` to build node-pty, `python3-pip` for
/// the corpus's PyPI packages when `python3` is Debian's), and by `vmtest` (`qemu-system-x86`
/// boots Debian kernels, `busybox-static` and `cpio` make their initramfs, `kmod`'s `depmod`
/// indexes their modules). `prometheus` (its `promtool` and server) and `systemd` (its
/// `systemd-analyze`) check and run the deployment files in `deploy/` (`tests/tests/deploy.rs`).
pub const PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "llvm-22-dev",
    "bpftrace",
    "bpftool",
    "strace",
    "git",
    "python3",
    "lsof",
    "tmux",
    "util-linux",
    "procps",
    "screen",
    "openssh-server",
    "openssh-client",
    "bsdutils",
    "python3-pip",
    "g++",
    "make",
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "kmod",
    "prometheus",
    "systemd",
];

/// The PyPI packages the corpus tests' workloads import (`tests/corpus/*.py`), pinned, installed
/// into the `python3` on PATH (the tests run the interpreter it resolves to).
pub const PYPI_PACKAGES: &[(&str, &str)] = &[
    ("pexpect", "4.9.0"),
    ("ptyprocess", "0.7.0"),
    ("asciinema", "2.4.0"),
    ("terminado", "0.18.1"),
    ("tornado", "6.5.2"),
];
/// node-pty as pinned in `tests/corpus/node/package.json` (checked by a unit test below).
pub const NODE_PTY_VERSION: &str = "1.1.0";
/// The corpus's Node project, relative to the workspace root.
const CORPUS_NODE_DIR: &str = "tests/corpus/node";
/// Where the Node headers of the machine's Node.js are (`npm ci --nodedir`: no download).
const NODE_DIR: &str = "/usr";

/// The bpf-linker release the eBPF build is known to work with.
pub const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian's LLVM 22, which bpf-linker is built against.
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// Where tracefs is mounted when it is not.
const TRACEFS_DIR: &str = tracefs_mounts::TRACEFS_DEFAULT;
/// `core`'s source as shipped by `rust-web-src`; `-Z build-std=core` reads it.
const RUST_SRC_CORE: &str = "/usr/lib/rustlib/src/rust/library/core/src/lib.rs";

/// Runs every setup step and prints one summary line.
pub fn run() -> Result<()> {
    let start = Instant::now();
    let toolchain = ensure_packages()?;
    check_rust_src()?;
    let linker = ensure_bpf_linker()?;
    let tracefs = ensure_tracefs()?;
    let python = ensure_corpus_python()?;
    let node = ensure_corpus_node()?;
    eprintln!(
        "setup: ok ({toolchain}, bpf-linker {linker}, tracefs at {tracefs}, {python}, {node}) in {}",
        util::secs(start.elapsed())
    );
    Ok(())
}

// ---------------------------------------------------------------- step 1: Debian packages

/// Installs the missing packages of `PACKAGES`; returns a summary for the final line.
fn ensure_packages() -> Result<String> {
    let missing = missing_packages(PACKAGES, &query_packages(PACKAGES)?);
    if missing.is_empty() {
        return Ok("toolchain present".into());
    }
    let why = format!("installing {}", missing.join(" "));
    let mut update = apt_get(&why)?;
    eprintln!("setup: installing Debian packages: {}", missing.join(" "));
    run_checked(update.arg("update"), "apt-get update")?;
    run_checked(
        apt_get(&why)?
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
        "apt-get install",
    )?;
    let still = missing_packages(PACKAGES, &query_packages(PACKAGES)?);
    if !still.is_empty() {
        bail!(
            "apt-get reported success but these are still not installed: {}",
            still.join(" ")
        );
    }
    Ok(format!("installed {}", missing.join(" ")))
}

/// `dpkg-query -W` output (`NAME<TAB>STATUS` lines) for `packages`. Unknown packages are just
/// absent from it (dpkg-query complains on stderr and exits 1; that is not an error here).
fn query_packages(packages: &[&str]) -> Result<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package}\t${Status}\n"])
        .args(packages)
        .stderr(Stdio::null())
        .output()
        .context("could not run dpkg-query: `cargo xtask setup` supports Debian (bookworm) only")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The entries of `wanted` that `dpkg_output` (see `query_packages`) does not show as installed.
/// A package is installed when its status is `<want> ok installed` (`want` may be `hold`);
/// `deinstall ok config-files`, `install ok unpacked`, `... reinstreq ...` and absence are not.
pub fn missing_packages(wanted: &[&str], dpkg_output: &str) -> Vec<String> {
    let installed = |pkg: &str| {
        dpkg_output.lines().any(|line| {
            let Some((name, status)) = line.split_once('\t') else {
                return false;
            };
            let name = name.split(':').next().unwrap_or(name); // multi-arch `name:arch`
            let words: Vec<&str> = status.split_whitespace().collect();
            name == pkg && words.len() == 3 && words[1] == "ok" && words[2] == "installed"
        })
    };
    wanted
        .iter()
        .filter(|pkg| !installed(pkg))
        .map(|pkg| pkg.to_string())
        .collect()
}

/// `apt-get` as root (sudo when needed), non-interactive.
fn apt_get(why: &str) -> Result<Command> {
    let mut cmd = root_command("env", why)?;
    cmd.args(["DEBIAN_FRONTEND=noninteractive", "apt-get"]);
    // apt's progress goes to stderr with xtask's own messages: stdout belongs to the program
    // xtask runs (`pty-trace demo` prints JSONL there when it is not a terminal).
    cmd.stdout(Stdio::from(std::io::stderr()));
    Ok(cmd)
}

/// `rust-web-src` must provide `core`'s source where Debian's rustc looks for it.
fn check_rust_src() -> Result<()> {
    if Path::new(RUST_SRC_CORE).is_file() {
        return Ok(());
    }
    bail!(
        "{RUST_SRC_CORE} is missing although rust-web-src is installed: \
         reinstall it with `apt-get install --reinstall rust-web-src`"
    )
}

// ---------------------------------------------------------------- step 2: bpf-linker

/// Installs bpf-linker `BPF_LINKER_VERSION` unless the one build.rs would use is that version.
fn ensure_bpf_linker() -> Result<String> {
    if let Some(found) = installed_bpf_linker() {
        if bpf_linker_is_wanted(found.1.as_deref()) {
            return Ok(BPF_LINKER_VERSION.into());
        }
        eprintln!(
            "setup: {} is version {}, want {BPF_LINKER_VERSION}",
            found.0.display(),
            found.1.as_deref().unwrap_or("unknown")
        );
    }
    install_bpf_linker()?;
    match installed_bpf_linker() {
        Some((_, Some(v))) if v == BPF_LINKER_VERSION => Ok(format!("{v} (installed)")),
        Some((path, v)) => bail!(
            "installed bpf-linker {BPF_LINKER_VERSION}, but {} (version {}) comes first on PATH: \
             remove it",
            path.display(),
            v.as_deref().unwrap_or("unknown")
        ),
        None => bail!(
            "`cargo install bpf-linker` succeeded but no bpf-linker is on PATH or in {}",
            cargo_bin_dir().unwrap_or_default().display()
        ),
    }
}

/// The bpf-linker build.rs would pick (PATH order, then the cargo bin dir) and its version.
fn installed_bpf_linker() -> Option<(PathBuf, Option<String>)> {
    let path = find_program("bpf-linker")?;
    let version = Command::new(&path)
        .arg("--version")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| parse_bpf_linker_version(&String::from_utf8_lossy(&out.stdout)));
    Some((path, version))
}

/// The version in `bpf-linker --version` output (`bpf-linker 0.13.0`).
pub fn parse_bpf_linker_version(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("bpf-linker")).then_some(())?;
        let version = words.next()?.trim_start_matches('v');
        version.chars().next().filter(char::is_ascii_digit)?;
        Some(version.to_string())
    })
}

/// Whether a reported version (None: unknown) is the one we want.
pub fn bpf_linker_is_wanted(version: Option<&str>) -> bool {
    version == Some(BPF_LINKER_VERSION)
}

/// `cargo +stable install bpf-linker@VERSION` (spelled `rustup run stable cargo install`, which
/// does not depend on which `cargo` comes first on PATH) against Debian's LLVM 22 (its default feature is
/// LLVM 23, hence `--no-default-features`). Runs outside the workspace so none of its cargo
/// configuration applies; output is streamed (it takes about a minute).
fn install_bpf_linker() -> Result<()> {
    let rustup = find_program("rustup").context(
        "rustup not found on PATH or in ~/.cargo/bin: bpf-linker is built with rustup's \
         stable toolchain; install rustup (stable), then re-run `cargo xtask setup`",
    )?;
    eprintln!(
        "setup: installing bpf-linker {BPF_LINKER_VERSION} (about a minute): \
         LLVM_PREFIX={LLVM_PREFIX} rustup run stable cargo install bpf-linker@{BPF_LINKER_VERSION} \
         --locked --no-default-features --features llvm-22"
    );
    let mut cmd = Command::new(rustup);
    cmd.args(["run", "stable", "cargo", "install"])
        .arg(format!("bpf-linker@{BPF_LINKER_VERSION}"))
        .args(["--locked", "--no-default-features", "--features", "llvm-22"])
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .env("PATH", util::path_with_cargo_bin())
        .current_dir(env::temp_dir());
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    run_checked(&mut cmd, "cargo install bpf-linker")
        .context("building bpf-linker failed: check that llvm-22-dev is installed and see above")
}

// ---------------------------------------------------------------- step 3: tracefs

/// Mounts tracefs at `TRACEFS_DIR` unless it is mounted somewhere; returns the mount point.
fn ensure_tracefs() -> Result<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    if let Some(dir) = tracefs_mount_point(&mounts) {
        return Ok(dir);
    }
    let why = format!("mounting tracefs at {TRACEFS_DIR}");
    run_checked(
        root_command("mount", &why)?.args(["-t", "tracefs", "nodev", TRACEFS_DIR]),
        &format!("mount -t tracefs nodev {TRACEFS_DIR}"),
    )
    .context("tracepoints cannot attach without tracefs (does the kernel have CONFIG_TRACING?)")?;
    eprintln!("setup: mounted tracefs at {TRACEFS_DIR}");
    Ok(format!("{TRACEFS_DIR} (mounted now)"))
}

/// The tracefs mount point in `/proc/mounts` text, preferring `TRACEFS_DIR` over others
/// (such as `/sys/kernel/debug/tracing`): the parser pty-trace itself uses.
pub fn tracefs_mount_point(mounts: &str) -> Option<String> {
    let points = tracefs_mounts::parse_tracefs_mounts(mounts);
    tracefs_mounts::choose_tracefs(&points).map(|p| p.display().to_string())
}

// ---------------------------------------------------------------- step 4: corpus packages

/// Makes the `python3` on PATH have `PYPI_PACKAGES` at their pinned versions. Running a Python
/// (a pyenv shim) costs a few hundred ms, so a stamp in the target dir records what the last
/// check found (the pins, and each package's `.dist-info` directory): while the pins are the
/// same and those directories exist, nothing is run.
fn ensure_corpus_python() -> Result<String> {
    let stamp = util::target_dir().join("xtask-corpus-python.stamp");
    if let Ok(text) = std::fs::read_to_string(&stamp)
        && python_stamp_is_current(&text, |p| p.is_dir())
    {
        return Ok("corpus PyPI packages present".into());
    }
    let python = find_program("python3")
        .context("python3 not found on PATH: the corpus tests need it (with pip)")?;
    let report = python_report(&python)?;
    let missing = missing_python_packages(&report);
    let (what, report) = if missing.is_empty() {
        ("corpus PyPI packages present".to_string(), report)
    } else {
        eprintln!(
            "setup: pip-installing {} into {}",
            missing.join(" "),
            python.display()
        );
        let mut pip = Command::new(&python);
        pip.args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
        ]);
        if report.lines().any(|l| l == "externally-managed") {
            pip.arg("--break-system-packages"); // Debian's python3: a test machine, pinned set
        }
        pip.args(
            PYPI_PACKAGES
                .iter()
                .map(|(name, version)| format!("{name}=={version}")),
        );
        pip.stdout(Stdio::from(std::io::stderr()));
        run_checked(&mut pip, "pip install (the corpus's PyPI packages)")?;
        let report = python_report(&python)?;
        let still = missing_python_packages(&report);
        if !still.is_empty() {
            bail!(
                "pip reported success but {} still lacks {}",
                python.display(),
                still.join(" ")
            );
        }
        (format!("installed {}", missing.join(" ")), report)
    };
    if let Some(dir) = stamp.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&stamp, python_stamp(&report))
        .with_context(|| format!("writing {}", stamp.display()))?;
    Ok(what)
}

/// What `python` has: a line `NAME VERSION DIST_INFO_DIR` per package of `PYPI_PACKAGES` it
/// has, and `externally-managed` when pip needs `--break-system-packages` (PEP 668).
fn python_report(python: &Path) -> Result<String> {
    const SCRIPT: &str = r#"
import importlib.metadata as m, os, sys, sysconfig
for name in sys.argv[1:]:
    try:
        d = m.distribution(name)
    except m.PackageNotFoundError:
        continue
    print(name, d.version, getattr(d, "_path", ""))
if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")):
    print("externally-managed")
"#;
    let out = Command::new(python)
        .args(["-c", SCRIPT])
        .args(PYPI_PACKAGES.iter().map(|(name, _)| *name))
        .output()
        .with_context(|| format!("could not run {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed listing its packages: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `name==version` for each pin that `report` (see `python_report`) lacks or has at another
/// version.
pub fn missing_python_packages(report: &str) -> Vec<String> {
    PYPI_PACKAGES
        .iter()
        .filter(|(name, version)| {
            !report.lines().any(|line| {
                let mut w = line.split_whitespace();
                w.next() == Some(name) && w.next() == Some(version)
            })
        })
        .map(|(name, version)| format!("{name}=={version}"))
        .collect()
}

/// The pins, one line, as the stamp's first line.
fn python_pins() -> String {
    let pins: Vec<String> = PYPI_PACKAGES
        .iter()
        .map(|(n, v)| format!("{n}=={v}"))
        .collect();
    format!("pins {}", pins.join(" "))
}

/// The stamp for a complete `report`: the pins, then each package's dist-info directory.
pub fn python_stamp(report: &str) -> String {
    let mut s = python_pins() + "\n";
    for line in report.lines() {
        if let Some(dir) = line.splitn(3, ' ').nth(2).filter(|d| !d.is_empty()) {
            s += &format!("{dir}\n");
        }
    }
    s
}

/// Whether a stamp still holds: same pins, one directory per package, all present.
pub fn python_stamp_is_current(stamp: &str, exists: impl Fn(&Path) -> bool) -> bool {
    let mut lines = stamp.lines();
    if lines.next() != Some(python_pins().as_str()) {
        return false;
    }
    let dirs: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    dirs.len() == PYPI_PACKAGES.len() && dirs.iter().all(|d| exists(Path::new(d)))
}

/// Runs `npm ci` in the corpus's Node project unless node-pty `NODE_PTY_VERSION` is built there.
fn ensure_corpus_node() -> Result<String> {
    let dir = util::workspace_root().join(CORPUS_NODE_DIR);
    let installed = std::fs::read_to_string(dir.join("node_modules/node-pty/package.json")).ok();
    let built = dir
        .join("node_modules/node-pty/build/Release/pty.node")
        .is_file();
    if built
        && installed
            .as_deref()
            .is_some_and(|p| package_json_version(p) == Some(NODE_PTY_VERSION))
    {
        return Ok(format!("node-pty {NODE_PTY_VERSION}"));
    }
    let npm = find_program("npm").context(
        "npm not found on PATH: the corpus tests need Node.js and npm (the machine's, /usr/bin/node)",
    )?;
    if !Path::new(NODE_DIR).join("include/node/node.h").is_file() {
        bail!(
            "{NODE_DIR}/include/node/node.h is missing: node-pty builds against the machine's Node headers"
        );
    }
    eprintln!(
        "setup: npm ci in {} (builds node-pty {NODE_PTY_VERSION})",
        dir.display()
    );
    let mut cmd = Command::new(npm);
    cmd.args([
        "ci",
        "--no-audit",
        "--no-fund",
        &format!("--nodedir={NODE_DIR}"),
    ])
    .current_dir(&dir)
    .stdout(Stdio::from(std::io::stderr()));
    run_checked(&mut cmd, "npm ci (tests/corpus/node)")?;
    if !dir
        .join("node_modules/node-pty/build/Release/pty.node")
        .is_file()
    {
        bail!(
            "npm ci succeeded but node-pty's native module was not built (were install scripts disabled?)"
        );
    }
    Ok(format!("node-pty {NODE_PTY_VERSION} (installed)"))
}

/// The top-level `"version"` of a package.json (the first `"version": "..."`, which npm writes
/// before any nested one).
pub fn package_json_version(text: &str) -> Option<&str> {
    let rest = &text[text.find("\"version\"")? + "\"version\"".len()..];
    let rest = rest
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_INSTALLED: &str = "rustc-web\tinstall ok installed\n\
        cargo-web\tinstall ok installed\n\
        rust-web-src\tinstall ok installed\n\
        llvm-22-dev\tinstall ok installed\n\
        bpftrace\tinstall ok installed\n\
        bpftool\tinstall ok installed\n\
        strace\tinstall ok installed\n\
        git\tinstall ok installed\n\
        python3\tinstall ok installed\n\
        lsof\tinstall ok installed\n\
        tmux\tinstall ok installed\n\
        util-linux\tinstall ok installed\n\
        procps\tinstall ok installed\n\
        screen\tinstall ok installed\n\
        openssh-server\tinstall ok installed\n\
        openssh-client\tinstall ok installed\n\
        bsdutils\tinstall ok installed\n\
        python3-pip\tinstall ok installed\n\
        g++\tinstall ok installed\n\
        make\tinstall ok installed\n\
        qemu-system-x86\tinstall ok installed\n\
        busybox-static\tinstall ok installed\n\
        cpio\tinstall ok installed\n\
        kmod\tinstall ok installed\n\
        prometheus\tinstall ok installed\n\
        systemd\tinstall ok installed\n";

    #[test]
    fn nothing_missing_when_all_installed() {
        assert!(missing_packages(PACKAGES, ALL_INSTALLED).is_empty());
    }

    #[test]
    fn everything_missing_on_empty_output() {
        assert_eq!(missing_packages(PACKAGES, ""), PACKAGES);
    }

    #[test]
    fn absent_and_half_installed_packages_are_missing() {
        let out = "rustc-web\tinstall ok installed\n\
                   cargo-web\tdeinstall ok config-files\n\
                   llvm-22-dev\tinstall ok unpacked\n\
                   strace\tinstall reinstreq half-installed\n\
                   tmux\thold ok installed\n";
        assert_eq!(
            missing_packages(
                &[
                    "rustc-web",
                    "cargo-web",
                    "rust-web-src",
                    "llvm-22-dev",
                    "strace",
                    "tmux"
                ],
                out
            ),
            ["cargo-web", "rust-web-src", "llvm-22-dev", "strace"]
        );
    }

    #[test]
    fn multiarch_names_and_prefixes() {
        let out = "procps:amd64\tinstall ok installed\nlsof-extra\tinstall ok installed\n";
        assert_eq!(missing_packages(&["procps", "lsof"], out), ["lsof"]);
    }

    #[test]
    fn bpf_linker_versions() {
        assert_eq!(
            parse_bpf_linker_version("bpf-linker 0.13.0\n").as_deref(),
            Some("0.13.0")
        );
        assert_eq!(
            parse_bpf_linker_version("bpf-linker v0.9.13\n").as_deref(),
            Some("0.9.13")
        );
        assert_eq!(
            parse_bpf_linker_version("warning: x\nbpf-linker 0.13.1 (LLVM 22.1)\n").as_deref(),
            Some("0.13.1")
        );
        assert_eq!(parse_bpf_linker_version(""), None);
        assert_eq!(parse_bpf_linker_version("bpf-linker\n"), None);
        assert_eq!(parse_bpf_linker_version("error: unknown flag\n"), None);
        assert_eq!(parse_bpf_linker_version("bpf-linker: error\n"), None);
    }

    #[test]
    fn only_the_pinned_bpf_linker_is_accepted() {
        assert!(bpf_linker_is_wanted(Some("0.13.0")));
        assert!(!bpf_linker_is_wanted(Some("0.13.1")));
        assert!(!bpf_linker_is_wanted(Some("0.9.13")));
        assert!(!bpf_linker_is_wanted(None));
    }

    #[test]
    fn tracefs_mount_points() {
        let base = "sysfs /sys sysfs rw 0 0\nproc /proc proc rw 0 0\n";
        assert_eq!(tracefs_mount_point(base), None);
        let debug = format!("{base}tracefs /sys/kernel/debug/tracing tracefs rw 0 0\n");
        assert_eq!(
            tracefs_mount_point(&debug).as_deref(),
            Some("/sys/kernel/debug/tracing")
        );
        let both = format!("{debug}nodev /sys/kernel/tracing tracefs rw,relatime 0 0\n");
        assert_eq!(
            tracefs_mount_point(&both).as_deref(),
            Some("/sys/kernel/tracing")
        );
        // A directory *named* tracefs on another file system is not a tracefs mount.
        assert_eq!(
            tracefs_mount_point("/dev/sda1 /mnt/tracefs ext4 rw 0 0\n"),
            None
        );
    }

    #[test]
    fn python_packages_missing_or_at_other_versions() {
        let all = "pexpect 4.9.0 /p/pexpect-4.9.0.dist-info\nptyprocess 0.7.0 /p/x\n\
                   asciinema 2.4.0 /p/a\nterminado 0.18.1 /p/t\ntornado 6.5.2 /p/to\n";
        assert!(missing_python_packages(all).is_empty());
        assert_eq!(missing_python_packages("").len(), PYPI_PACKAGES.len());
        let old = all.replace("pexpect 4.9.0", "pexpect 4.8.0");
        assert_eq!(missing_python_packages(&old), ["pexpect==4.9.0"]);
        let stamp = python_stamp(all);
        assert!(stamp.starts_with("pins pexpect==4.9.0 "));
        assert!(python_stamp_is_current(&stamp, |_| true));
        assert!(!python_stamp_is_current(&stamp, |p| p != Path::new("/p/t")));
        assert!(!python_stamp_is_current(
            &stamp.replace("4.9.0", "4.8.0"),
            |_| true
        ));
        // A report without a dist-info path for one package never makes a current stamp.
        let partial = python_stamp(&all.replace(" /p/to", ""));
        assert!(!python_stamp_is_current(&partial, |_| true));
        assert!(!python_stamp_is_current("", |_| true));
    }

    #[test]
    fn node_pty_pin_matches_the_corpus_package_json() {
        let pkg = include_str!("../../tests/corpus/node/package.json");
        assert!(
            pkg.contains(&format!("\"node-pty\": \"{NODE_PTY_VERSION}\"")),
            "{pkg}"
        );
        assert_eq!(
            package_json_version(
                "{\n  \"name\": \"node-pty\",\n  \"version\": \"1.1.0\",\n  \"dependencies\": {}\n}"
            ),
            Some("1.1.0")
        );
        assert_eq!(
            package_json_version("{\"version\":\"2.0.0-beta.1\"}"),
            Some("2.0.0-beta.1")
        );
        assert_eq!(package_json_version("{}"), None);
    }
}
