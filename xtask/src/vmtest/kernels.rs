//! Debian kernels for `vmtest`: which packages hold each one (resolved at run time from
//! `linux-image-amd64`'s Depends in the kernel's suite), downloading them with `apt-get download`
//! (apt checks the checksums and signatures) through a private apt configuration, unpacking them
//! with `dpkg-deb -x` and indexing their modules with `depmod`.
//!
//! The machine's own apt sources, lists and state are never read or changed: each suite has its
//! own configuration under `target/vmtest/cache/apt/<codename>/`, which takes only the machine's
//! `Acquire::` settings (proxies, date checks) and none of its hooks. Everything is cached under
//! `target/vmtest/cache/`: once a kernel's packages are there, later runs use no network (until
//! `--refresh`). Not here: the initramfs (`initramfs.rs`) and booting (`qemu.rs`).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::util::find_program;

/// One kernel line that vmtest knows how to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suite {
    /// What `--kernel` calls it.
    pub label: &'static str,
    /// Debian's codename; names the cache directories.
    pub codename: &'static str,
    /// Suites of the main archive (deb.debian.org/debian).
    pub suites: &'static [&'static str],
    /// The security suite (deb.debian.org/debian-security), where kernel updates land first.
    pub security: Option<&'static str>,
}

/// The kernels of the matrix, oldest first: every Debian release with a kernel that users run
/// (5.10 has no `bpf_get_current_task_btf`, 6.1 and 6.12 are the stable and oldstable kernels),
/// and sid for what is coming.
pub const SUITES: &[Suite] = &[
    Suite {
        label: "5.10",
        codename: "bullseye",
        suites: &["bullseye", "bullseye-updates"],
        security: Some("bullseye-security"),
    },
    Suite {
        label: "6.1",
        codename: "bookworm",
        suites: &["bookworm", "bookworm-updates"],
        security: Some("bookworm-security"),
    },
    Suite {
        label: "6.12",
        codename: "trixie",
        suites: &["trixie", "trixie-updates"],
        security: Some("trixie-security"),
    },
    Suite {
        label: "sid",
        codename: "sid",
        suites: &["sid"],
        security: None,
    },
];

const MIRROR: &str = "http://deb.debian.org/debian";
const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// The meta package whose Depends names the suite's current kernel image.
const META_PACKAGE: &str = "linux-image-amd64";

/// A kernel ready to boot: unpacked, modules indexed.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `uname -r` of the kernel, e.g. `6.12.118+deb13-amd64`.
    pub release: String,
    /// The Debian package versions it came from, e.g. `linux-image-6.12.118+deb13-amd64 6.12.118-1`.
    pub packages: Vec<String>,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` (with `modules.dep`).
    pub modules: PathBuf,
}

/// Makes `suite`'s kernel ready under `cache` (see the module doc); `refresh` re-resolves the
/// packages from a fresh `apt-get update` even when cached ones exist.
pub fn fetch(suite: &Suite, cache: &Path, refresh: bool) -> Result<Kernel> {
    let debs_dir = cache.join("debs").join(suite.codename);
    let resolved_file = cache
        .join("resolved")
        .join(format!("{}.txt", suite.codename));
    let cached = if refresh {
        None
    } else {
        fs::read_to_string(&resolved_file)
            .ok()
            .and_then(|t| Resolved::parse(&t))
            .filter(|r| r.debs.iter().all(|d| debs_dir.join(d).is_file()))
    };
    let resolved = match cached {
        Some(r) => r,
        None => {
            let r = resolve_and_download(suite, cache, &debs_dir)?;
            write_file(&resolved_file, &r.render())?;
            r
        }
    };
    let root = cache.join("kernels").join(&resolved.release);
    unpack(&resolved, &debs_dir, &root)?;
    let (vmlinuz, modules) = locate(&root, &resolved.release)?;
    Ok(Kernel {
        release: resolved.release.clone(),
        packages: resolved.versions.clone(),
        vmlinuz,
        modules,
    })
}

/// What `resolve_and_download` found, cached as `resolved/<codename>.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub release: String,
    /// `package version` per package.
    pub versions: Vec<String>,
    /// The `.deb` file names in the suite's debs directory.
    pub debs: Vec<String>,
}

impl Resolved {
    pub fn render(&self) -> String {
        let mut s = format!("release {}\n", self.release);
        for (v, d) in self.versions.iter().zip(&self.debs) {
            s += &format!("package {v} {d}\n");
        }
        s
    }

    /// The inverse of `render`; None for anything else (then the cache is not used).
    pub fn parse(text: &str) -> Option<Self> {
        let mut release = None;
        let (mut versions, mut debs) = (Vec::new(), Vec::new());
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["release", r] => release = Some(r.to_string()),
                ["package", name, version, deb] => {
                    versions.push(format!("{name} {version}"));
                    debs.push(deb.to_string());
                }
                [] => {}
                _ => return None,
            }
        }
        let release = release?;
        (!debs.is_empty()).then_some(Self {
            release,
            versions,
            debs,
        })
    }
}

/// `apt-get update` in the suite's private configuration, then the kernel's packages from
/// `linux-image-amd64`'s Depends, then `apt-get download` of those not already cached.
fn resolve_and_download(suite: &Suite, cache: &Path, debs_dir: &Path) -> Result<Resolved> {
    let apt = PrivateApt::create(&cache.join("apt").join(suite.codename), suite)?;
    eprintln!(
        "vmtest: {}: apt-get update ({})",
        suite.label,
        suite_list(suite).join(" ")
    );
    apt.run("apt-get", &["-q", "update"], None)?;
    let meta = apt.run(
        "apt-cache",
        &["show", "--no-all-versions", META_PACKAGE],
        None,
    )?;
    let meta = Stanza::parse(&meta);
    let image = image_package(meta.get("Depends").unwrap_or_default()).with_context(|| {
        format!(
            "{META_PACKAGE} in {} depends on no linux-image-* package: {:?}",
            suite.codename,
            meta.get("Depends")
        )
    })?;
    let release = image["linux-image-".len()..].to_string();
    let image_stanza =
        Stanza::parse(&apt.run("apt-cache", &["show", "--no-all-versions", &image], None)?);
    let packages = kernel_packages(
        &image,
        &release,
        image_stanza.get("Depends").unwrap_or_default(),
    );
    let mut versions = Vec::new();
    let mut debs = Vec::new();
    for pkg in &packages {
        let stanza = if *pkg == image {
            image_stanza.clone()
        } else {
            Stanza::parse(&apt.run("apt-cache", &["show", "--no-all-versions", pkg], None)?)
        };
        let (Some(version), Some(arch)) = (stanza.get("Version"), stanza.get("Architecture"))
        else {
            bail!(
                "apt-cache show {pkg} ({}) has no Version or Architecture",
                suite.codename
            );
        };
        versions.push(format!("{pkg} {version}"));
        debs.push(deb_file_name(pkg, version, arch));
    }
    fs::create_dir_all(debs_dir).with_context(|| format!("creating {}", debs_dir.display()))?;
    let missing: Vec<&String> = packages
        .iter()
        .zip(&debs)
        .filter(|(_, deb)| !debs_dir.join(deb).is_file())
        .map(|(pkg, _)| pkg)
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "vmtest: {}: apt-get download {}",
            suite.label,
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut args = vec!["-q", "download"];
        args.extend(missing.iter().map(|s| s.as_str()));
        apt.run("apt-get", &args, Some(debs_dir))?;
    }
    for deb in &debs {
        if !debs_dir.join(deb).is_file() {
            bail!(
                "apt-get download succeeded but {} is not there",
                debs_dir.join(deb).display()
            );
        }
    }
    Ok(Resolved {
        release,
        versions,
        debs,
    })
}

/// The private apt configuration of one suite (see the module doc), used through `APT_CONFIG`.
struct PrivateApt {
    config: PathBuf,
}

impl PrivateApt {
    fn create(dir: &Path, suite: &Suite) -> Result<Self> {
        for sub in [
            "apt.conf.d",
            "sources.list.d",
            "preferences.d",
            "state/lists/partial",
            "cache/archives/partial",
        ] {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let dir = fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
        write_file(&dir.join("status"), "")?;
        write_file(
            &dir.join("sources.list.d")
                .join(format!("{}.sources", suite.codename)),
            &sources(suite),
        )?;
        // The machine's Acquire settings: proxies, and date checks an archive snapshot needs.
        let dump = Command::new("apt-config")
            .args(["dump", "Acquire"])
            .stderr(Stdio::null())
            .output()
            .context("could not run apt-config: vmtest fetches kernels with Debian's apt")?;
        write_file(
            &dir.join("apt.conf.d").join("50machine-acquire"),
            &acquire_settings(&String::from_utf8_lossy(&dump.stdout)),
        )?;
        let config = dir.join("apt.conf");
        write_file(&config, &apt_conf(&dir))?;
        Ok(Self { config })
    }

    /// Runs an apt program in this configuration; its stdout, or an error with its stderr.
    fn run(&self, program: &str, args: &[&str], cwd: Option<&Path>) -> Result<String> {
        let mut cmd = Command::new(program);
        cmd.env("APT_CONFIG", &self.config).args(args);
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        let what = format!("{program} {}", args.join(" "));
        let out = cmd
            .output()
            .with_context(|| format!("could not start {what}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // apt reports some failures (a missing index, a bad signature) as `E:` lines with exit 0.
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("E:")).collect();
        if !out.status.success() || !errors.is_empty() {
            let why = if errors.is_empty() {
                stderr
                    .trim()
                    .lines()
                    .last()
                    .unwrap_or("no message")
                    .to_string()
            } else {
                errors.join(" | ")
            };
            bail!(
                "{what} failed ({}, APT_CONFIG={}): {why}",
                out.status,
                self.config.display()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn suite_list(suite: &Suite) -> Vec<&'static str> {
    suite.suites.iter().copied().chain(suite.security).collect()
}

/// The deb822 sources of `suite`: Packages indexes only (no translations, no DEP-11 metadata).
pub fn sources(suite: &Suite) -> String {
    let entry = |uri: &str, suites: &str| {
        format!(
            "Types: deb\nURIs: {uri}\nSuites: {suites}\nComponents: main\nArchitectures: amd64\n\
             Targets: Packages\nSigned-By: {KEYRING}\n"
        )
    };
    let mut s = entry(MIRROR, &suite.suites.join(" "));
    if let Some(security) = suite.security {
        s += "\n";
        s += &entry(SECURITY_MIRROR, security);
    }
    s
}

/// The `APT_CONFIG` file: every directory apt reads or writes points into `dir`. It is read
/// before `Dir::Etc::Parts`, so the machine's `apt.conf.d` (and its update hooks) is not read.
/// No binary caches (`pkgcache.bin`, 50 MB per suite): apt builds them in memory.
pub fn apt_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "// cargo xtask vmtest: a private apt configuration (the machine's is not used)\n\
         Dir::Etc::Main \"/dev/null\";\n\
         Dir::Etc::Parts \"{d}/apt.conf.d\";\n\
         Dir::Etc::SourceList \"/dev/null\";\n\
         Dir::Etc::SourceParts \"{d}/sources.list.d\";\n\
         Dir::Etc::Preferences \"/dev/null\";\n\
         Dir::Etc::PreferencesParts \"{d}/preferences.d\";\n\
         Dir::State \"{d}/state\";\n\
         Dir::State::Lists \"{d}/state/lists\";\n\
         Dir::State::status \"{d}/status\";\n\
         Dir::Cache \"{d}/cache\";\n\
         Dir::Cache::pkgcache \"\";\n\
         Dir::Cache::srcpkgcache \"\";\n\
         APT::Architecture \"amd64\";\n\
         APT::Architectures {{ \"amd64\"; }};\n\
         Acquire::Languages \"none\";\n"
    )
}

/// The lines of `apt-config dump Acquire` worth keeping (proxies, date and signature checks),
/// without the index targets (the private sources ask for Packages only).
pub fn acquire_settings(dump: &str) -> String {
    let mut s = String::from("// the machine's Acquire settings (apt-config dump Acquire)\n");
    for line in dump.lines() {
        let key = line.split_whitespace().next().unwrap_or("");
        if key.starts_with("Acquire::")
            && !key.starts_with("Acquire::IndexTargets")
            && !key.starts_with("Acquire::Languages")
            && line.trim_end().ends_with(';')
        {
            s += line;
            s += "\n";
        }
    }
    s
}

/// One `apt-cache show` stanza (the first one in `text`): field values with continuation lines
/// joined.
#[derive(Debug, Clone, Default)]
pub struct Stanza(Vec<(String, String)>);

impl Stanza {
    pub fn parse(text: &str) -> Self {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if line.trim().is_empty() {
                if fields.is_empty() {
                    continue;
                }
                break;
            }
            if line.starts_with([' ', '\t']) {
                if let Some((_, v)) = fields.last_mut() {
                    v.push(' ');
                    v.push_str(line.trim());
                }
            } else if let Some((k, v)) = line.split_once(':') {
                fields.push((k.to_string(), v.trim().to_string()));
            }
        }
        Self(fields)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// The package names of a Depends field: the first alternative of each entry, without version
/// constraints or architecture qualifiers.
pub fn depends_names(depends: &str) -> Vec<String> {
    depends
        .split(',')
        .filter_map(|entry| {
            let first = entry.split('|').next()?.trim();
            let name = first.split(['(', ' ', '[']).next()?.trim();
            let name = name.split(':').next()?;
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// The versioned image package (`linux-image-6.1.0-57-amd64`) that the meta package depends on.
pub fn image_package(meta_depends: &str) -> Option<String> {
    depends_names(meta_depends)
        .into_iter()
        .find(|n| n.starts_with("linux-image-") && n != META_PACKAGE)
}

/// The packages that hold the kernel and its modules: the image itself, or (sid's split layout,
/// where the image is an empty meta package) its `linux-binary-*` (vmlinuz) and
/// `linux-modules-*`.
pub fn kernel_packages(image: &str, release: &str, image_depends: &str) -> Vec<String> {
    let deps = depends_names(image_depends);
    let binary = format!("linux-binary-{release}");
    if !deps.contains(&binary) {
        return vec![image.to_string()];
    }
    let modules = format!("linux-modules-{release}");
    let mut packages = vec![binary];
    if deps.contains(&modules) {
        packages.push(modules);
    }
    packages
}

/// The file name `apt-get download` gives a package (an epoch's colon is written `%3a`).
pub fn deb_file_name(package: &str, version: &str, arch: &str) -> String {
    format!("{package}_{}_{arch}.deb", version.replace(':', "%3a"))
}

/// Unpacks the `.deb`s into `root` and runs `depmod`, unless a stamp says this was done for the
/// same files. Modules under `usr/lib/modules` (merged /usr) are reached through `lib -> usr/lib`
/// so that `depmod -b` (which looks in `lib/modules`) finds them.
fn unpack(resolved: &Resolved, debs_dir: &Path, root: &Path) -> Result<()> {
    let stamp = root.join(".vmtest-unpacked");
    let want = resolved.render();
    if fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        return Ok(());
    }
    if root.exists() {
        fs::remove_dir_all(root).with_context(|| format!("removing {}", root.display()))?;
    }
    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    eprintln!(
        "vmtest: unpacking {} ({})",
        resolved.release,
        resolved.debs.join(" ")
    );
    for deb in &resolved.debs {
        let mut cmd = Command::new("dpkg-deb");
        cmd.arg("-x").arg(debs_dir.join(deb)).arg(root);
        crate::util::run_checked(&mut cmd, &format!("dpkg-deb -x {deb}"))?;
    }
    let lib = root.join("lib");
    if !lib.exists() && root.join("usr/lib/modules").is_dir() {
        std::os::unix::fs::symlink("usr/lib", &lib)
            .with_context(|| format!("linking {} to usr/lib", lib.display()))?;
    }
    let depmod = find_program("depmod")
        .or_else(|| {
            ["/usr/sbin/depmod", "/sbin/depmod"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        })
        .context("depmod not found: install kmod (`cargo xtask setup` does)")?;
    let out = Command::new(&depmod)
        .arg("-b")
        .arg(root)
        .arg(&resolved.release)
        .output()
        .with_context(|| format!("could not start {}", depmod.display()))?;
    if !out.status.success() {
        bail!(
            "depmod -b {} {} failed: {}",
            root.display(),
            resolved.release,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    write_file(&stamp, &want)
}

/// The kernel image and the modules directory of an unpacked kernel.
fn locate(root: &Path, release: &str) -> Result<(PathBuf, PathBuf)> {
    let modules = root.join("lib/modules").join(release);
    if !modules.join("modules.dep").is_file() {
        bail!("{} has no modules.dep after depmod", modules.display());
    }
    let candidates = [
        root.join("boot").join(format!("vmlinuz-{release}")),
        modules.join("vmlinuz"),
        root.join("usr/lib/modules").join(release).join("vmlinuz"),
    ];
    let vmlinuz = candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .with_context(|| {
            format!(
                "no vmlinuz for {release} in {} (looked in boot/ and lib/modules/{release}/)",
                root.display()
            )
        })?;
    Ok((vmlinuz, modules))
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // `apt-cache show --no-all-versions` output as seen on 2026-12-01 (shortened).
    const SID_META: &str = "Package: linux-image-amd64\nSource: linux-signed-amd64 (7.2.13+1)\n\
        Version: 7.2.13-1\nInstalled-Size: 13\nMaintainer: Debian Kernel Team\n\
        Architecture: amd64\n\
        Depends: linux-base-amd64 (= 7.2.13-1), linux-image-7.2.13+deb14-amd64 (= 7.2.13-1)\n\
        Description: Linux for 64-bit PCs (meta-package)\n This package depends on the latest\n\n";
    const SID_IMAGE_DEPENDS: &str = "dracut | initramfs-tools (>= 0.120+deb8u2) | \
        linux-initramfs-tool, linux-base-7.2.13+deb14-amd64 (= 7.2.13-1), \
        linux-binary-7.2.13+deb14-amd64 (= 7.2.13-1), linux-modules-7.2.13+deb14-amd64 (= 7.2.13-1)";
    const BOOKWORM_IMAGE_DEPENDS: &str =
        "kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool";

    #[test]
    fn the_image_comes_from_the_meta_packages_depends() {
        let stanza = Stanza::parse(SID_META);
        assert_eq!(stanza.get("Version"), Some("7.2.13-1"));
        assert_eq!(stanza.get("architecture"), Some("amd64"));
        assert_eq!(
            stanza.get("Description"),
            Some("Linux for 64-bit PCs (meta-package) This package depends on the latest")
        );
        assert_eq!(
            image_package(stanza.get("Depends").unwrap()).as_deref(),
            Some("linux-image-7.2.13+deb14-amd64")
        );
        assert_eq!(
            image_package("linux-image-6.1.0-57-amd64 (= 6.1.192-3)").as_deref(),
            Some("linux-image-6.1.0-57-amd64")
        );
        assert_eq!(image_package("linux-base-amd64"), None);
        assert_eq!(image_package(""), None);
    }

    #[test]
    fn depends_keep_first_alternatives_without_constraints() {
        assert_eq!(
            depends_names("a (>= 1), b | c, d:any, e [amd64]"),
            ["a", "b", "d", "e"]
        );
        assert!(depends_names("").is_empty());
    }

    #[test]
    fn both_package_layouts() {
        assert_eq!(
            kernel_packages(
                "linux-image-7.2.13+deb14-amd64",
                "7.2.13+deb14-amd64",
                SID_IMAGE_DEPENDS
            ),
            [
                "linux-binary-7.2.13+deb14-amd64",
                "linux-modules-7.2.13+deb14-amd64"
            ]
        );
        assert_eq!(
            kernel_packages(
                "linux-image-6.1.0-57-amd64",
                "6.1.0-57-amd64",
                BOOKWORM_IMAGE_DEPENDS
            ),
            ["linux-image-6.1.0-57-amd64"]
        );
    }

    #[test]
    fn deb_names_escape_epochs() {
        assert_eq!(
            deb_file_name("linux-image-6.1.0-57-amd64", "6.1.192-3", "amd64"),
            "linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb"
        );
        assert_eq!(deb_file_name("x", "1:2.0", "all"), "x_1%3a2.0_all.deb");
    }

    #[test]
    fn resolved_round_trips_and_rejects_junk() {
        let r = Resolved {
            release: "7.2.13+deb14-amd64".into(),
            versions: vec![
                "linux-binary-7.2.13+deb14-amd64 7.2.13-1".into(),
                "linux-modules-7.2.13+deb14-amd64 7.2.13-1".into(),
            ],
            debs: vec!["a.deb".into(), "b.deb".into()],
        };
        assert_eq!(Resolved::parse(&r.render()), Some(r));
        assert_eq!(Resolved::parse(""), None);
        assert_eq!(Resolved::parse("release x\n"), None);
        assert_eq!(Resolved::parse("release x\npackage a\n"), None);
    }

    #[test]
    fn private_configuration_never_points_at_the_machines() {
        let conf = apt_conf(Path::new("/c/apt/sid"));
        for line in conf.lines().filter(|l| l.starts_with("Dir::")) {
            assert!(
                line.contains("\"/c/apt/sid/")
                    || line.contains("\"/dev/null\"")
                    || line.ends_with(" \"\";"),
                "{line}"
            );
        }
        let trixie = &SUITES[2];
        let s = sources(trixie);
        assert!(s.contains("Suites: trixie trixie-updates\n"), "{s}");
        assert!(s.contains("Suites: trixie-security\n"), "{s}");
        assert_eq!(s.matches("Targets: Packages\n").count(), 2);
        assert!(!sources(&SUITES[3]).contains("debian-security"));
    }

    #[test]
    fn only_plain_acquire_settings_are_kept() {
        let dump = "Acquire \"\";\nAcquire::http::Proxy \"http://p:3128\";\n\
            Acquire::IndexTargets::deb::DEP-11::MetaKey \"x\";\nAcquire::Check-Valid-Until \"false\";\n\
            APT::Update::Post-Invoke-Success:: \"appstreamcli refresh\";\n";
        let kept = acquire_settings(dump);
        assert!(kept.contains("Acquire::http::Proxy \"http://p:3128\";\n"));
        assert!(kept.contains("Acquire::Check-Valid-Until \"false\";\n"));
        assert!(!kept.contains("IndexTargets"));
        assert!(!kept.contains("Post-Invoke"));
        assert!(!kept.contains("Acquire \"\""));
    }

    #[test]
    fn labels_are_unique() {
        for (i, a) in SUITES.iter().enumerate() {
            for b in &SUITES[i + 1..] {
                assert_ne!(a.label, b.label);
                assert_ne!(a.codename, b.codename);
            }
        }
    }
}
