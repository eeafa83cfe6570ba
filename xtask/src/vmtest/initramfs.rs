//! The initramfs `vmtest` boots each kernel with: a static busybox, the kernel's 9p-over-virtio
//! modules in dependency order (read from `modules.dep`; the ones built into the kernel are
//! skipped), and an `/init` that mounts the host's root read-only and the results directory
//! writable, then runs the plan (`run.sh` in the results directory, see `guest.rs`) chrooted
//! into the host's root, so the guest runs the host's binaries unchanged.
//!
//! The archive is cpio newc + gzip, rebuilt on every run (about a second). Not here: what the
//! guest runs (`guest.rs`), booting (`qemu.rs`).

use std::{collections::HashSet, fs, path::Path, process::Command};

use anyhow::{Context, Result, bail};

use super::kernels::Kernel;

/// The 9p tags the init script mounts (see `qemu.rs`'s `-virtfs` options).
pub const HOST_ROOT_TAG: &str = "hostroot";
pub const OUT_TAG: &str = "vmout";
/// Where the results directory appears inside the chroot. The guest's own tmpfs is on /tmp, so
/// this is mounted after it.
pub const GUEST_OUT_DIR: &str = "/tmp/vmtest-out";
/// The plan's file name in the results directory.
pub const PLAN_FILE: &str = "run.sh";
/// Printed on the console with the plan's exit status, last thing before powering off.
pub const EXIT_MARKER: &str = "VMTEST-EXIT";
/// A kernel command-line word that makes /init print `PROBE_MARKER` and power off at once
/// (the KVM probe).
pub const PROBE_ARG: &str = "vmtest.probe";
pub const PROBE_MARKER: &str = "VMTEST-PROBE-OK";
/// The modules the 9p mounts need; their dependencies come from `modules.dep`.
pub const ROOT_MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p"];
/// The statically linked busybox of Debian's `busybox-static`.
const BUSYBOX: &str = "/bin/busybox";

/// Builds `out` (gzip'd cpio) for `kernel` in a staging directory beside it; returns the names of
/// the modules it carries, in load order.
pub fn build(kernel: &Kernel, out: &Path) -> Result<Vec<String>> {
    let staging = out.with_extension("d");
    if staging.exists() {
        fs::remove_dir_all(&staging).with_context(|| format!("removing {}", staging.display()))?;
    }
    for dir in ["bin", "modules", "proc", "sys", "dev", "host"] {
        fs::create_dir_all(staging.join(dir))
            .with_context(|| format!("creating {}", staging.join(dir).display()))?;
    }
    if !is_static_elf(Path::new(BUSYBOX)) {
        bail!(
            "{BUSYBOX} is missing or not statically linked: install busybox-static (`cargo xtask setup` does)"
        );
    }
    fs::copy(BUSYBOX, staging.join("bin/busybox")).with_context(|| format!("copying {BUSYBOX}"))?;

    let dep = fs::read_to_string(kernel.modules.join("modules.dep"))
        .with_context(|| format!("reading {}/modules.dep", kernel.modules.display()))?;
    let builtin = fs::read_to_string(kernel.modules.join("modules.builtin")).ok();
    let order = load_order(&dep, ROOT_MODULES, builtin.as_deref())
        .with_context(|| format!("kernel {}", kernel.release))?;
    let mut names = Vec::new();
    for (i, rel) in order.iter().enumerate() {
        let name = module_name(rel);
        let dest = staging
            .join("modules")
            .join(format!("{:02}-{name}.ko", i + 1));
        decompress_module(&kernel.modules.join(rel), &dest)?;
        names.push(name);
    }
    let init = staging.join("init");
    fs::write(&init, INIT_SCRIPT).with_context(|| format!("writing {}", init.display()))?;
    fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .with_context(|| format!("making {} executable", init.display()))?;

    // cpio reads the file list on stdin; -R 0:0 makes everything root's whoever builds it.
    let script = "find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1 -n > \"$1\"";
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script, "sh"])
        .arg(out)
        .current_dir(&staging);
    crate::util::run_checked(&mut cmd, "cpio | gzip (initramfs)")?;
    fs::remove_dir_all(&staging).with_context(|| format!("removing {}", staging.display()))?;
    Ok(names)
}

/// The relative paths (as in `modules.dep`) of the modules to load, dependencies first, for
/// `roots`. A root that is not in `modules.dep` must be built in: listed in `modules.builtin`,
/// or assumed so when the kernel ships no `modules.builtin` (`builtin` is None).
pub fn load_order(modules_dep: &str, roots: &[&str], builtin: Option<&str>) -> Result<Vec<String>> {
    let deps: Vec<(String, Vec<String>)> = modules_dep
        .lines()
        .filter_map(|line| {
            let (module, rest) = line.split_once(':')?;
            Some((
                module.trim().to_string(),
                rest.split_whitespace().map(str::to_string).collect(),
            ))
        })
        .collect();
    let find = |name: &str| deps.iter().find(|(m, _)| module_name(m) == normalize(name));
    let is_builtin = |name: &str| match builtin {
        None => true,
        Some(text) => text
            .lines()
            .any(|l| module_name(l.trim()) == normalize(name)),
    };

    let mut order: Vec<String> = Vec::new();
    let mut visiting: HashSet<String> = HashSet::new();
    // Depth first, dependencies before dependents. modprobe loads a module's dependency list
    // from its end; doing the same keeps the order familiar.
    fn visit(
        path: &str,
        deps: &[(String, Vec<String>)],
        order: &mut Vec<String>,
        visiting: &mut HashSet<String>,
    ) -> Result<()> {
        if order.iter().any(|p| p == path) {
            return Ok(());
        }
        if !visiting.insert(path.to_string()) {
            bail!("modules.dep has a dependency cycle through {path}");
        }
        let own = deps
            .iter()
            .find(|(m, _)| m == path)
            .map(|(_, d)| d.clone())
            .unwrap_or_default();
        for dep in own.iter().rev() {
            visit(dep, deps, order, visiting)?;
        }
        order.push(path.to_string());
        Ok(())
    }
    for root in roots {
        match find(root) {
            Some((path, _)) => visit(path, &deps, &mut order, &mut visiting)?,
            None if is_builtin(root) => {}
            None => bail!("module {root} is neither built into the kernel nor in modules.dep"),
        }
    }
    Ok(order)
}

/// `kernel/net/9p/9pnet_virtio.ko.xz` -> `9pnet_virtio` (with `-` read as `_`, as modprobe does).
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    normalize(stem)
}

fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Copies a module, decompressing `.ko.xz`/`.ko.zst`/`.ko.gz` (busybox's insmod wants `.ko`).
fn decompress_module(src: &Path, dest: &Path) -> Result<()> {
    let name = src.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        Some("xz")
    } else if name.ends_with(".zst") {
        Some("zstd")
    } else if name.ends_with(".gz") {
        Some("gzip")
    } else {
        None
    };
    match tool {
        None => {
            fs::copy(src, dest).with_context(|| format!("copying {}", src.display()))?;
        }
        Some(tool) => {
            let out =
                fs::File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
            let mut cmd = Command::new(tool);
            cmd.args(["-d", "-c"]).arg(src).stdout(out);
            crate::util::run_checked(&mut cmd, &format!("{tool} -dc {}", src.display()))?;
        }
    }
    Ok(())
}

/// Whether `path` is an ELF file without a program interpreter (statically linked).
fn is_static_elf(path: &Path) -> bool {
    let Ok(bytes) = fs::read(path) else {
        return false;
    };
    bytes.starts_with(b"\x7fELF") && !bytes.windows(16).any(|w| w.starts_with(b"/lib64/ld-linux"))
}

/// The initramfs's `/init` (busybox sh). Every failure prints a `vmtest:` line on the console
/// and powers off with exit status 125, so a broken guest never waits for the host's timeout.
pub const INIT_SCRIPT: &str = r#"#!/bin/busybox sh
# /init of `cargo xtask vmtest`'s initramfs (xtask/src/vmtest/initramfs.rs).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
if grep -qw vmtest.probe /proc/cmdline; then echo VMTEST-PROBE-OK; poweroff -f; fi
echo "vmtest: kernel $(uname -r) up after $(cut -d' ' -f1 /proc/uptime)s"
stop() { echo "vmtest: $*"; echo "VMTEST-EXIT 125"; poweroff -f; sleep 5; }
for m in /modules/*.ko; do insmod "$m" || echo "vmtest: insmod $m failed"; done
H=/host
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot $H \
  || stop "cannot mount the host's root over 9p"
mount -t proc proc $H/proc || stop "cannot mount proc"
mount -t sysfs sysfs $H/sys || stop "cannot mount sysfs"
mount -t devtmpfs devtmpfs $H/dev || stop "cannot mount devtmpfs"
mkdir -p $H/dev/pts
mount -t devpts -o ptmxmode=0666,mode=0620,gid=5 devpts $H/dev/pts || stop "cannot mount devpts"
[ -c $H/dev/ptmx ] || ln -sf pts/ptmx $H/dev/ptmx
mount -t tmpfs -o mode=1777 tmpfs $H/tmp || stop "cannot mount /tmp"
mount -t tmpfs -o mode=0755 tmpfs $H/run || stop "cannot mount /run"
mount -t tracefs tracefs $H/sys/kernel/tracing || echo "vmtest: no tracefs"
mount -t debugfs debugfs $H/sys/kernel/debug 2>/dev/null
mount -t bpf bpf $H/sys/fs/bpf 2>/dev/null
mount -t cgroup2 cgroup2 $H/sys/fs/cgroup 2>/dev/null
mkdir -p $H/tmp/vmtest-out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 vmout $H/tmp/vmtest-out \
  || stop "cannot mount the results directory over 9p"
[ -f $H/tmp/vmtest-out/run.sh ] || stop "no run.sh in the results directory"
chroot $H /bin/sh /tmp/vmtest-out/run.sh
echo "VMTEST-EXIT $?"
sync
poweroff -f
"#;

#[cfg(test)]
mod tests {
    use super::*;

    // 6.1's lines for the 9p chain (virtio_pci is a module there).
    const DEP_6_1: &str = "kernel/fs/fscache/fscache.ko:\n\
        kernel/fs/netfs/netfs.ko:\n\
        kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko\n\
        kernel/drivers/virtio/virtio.ko:\n\
        kernel/drivers/virtio/virtio_ring.ko:\n\
        kernel/drivers/virtio/virtio_pci_modern_dev.ko:\n\
        kernel/drivers/virtio/virtio_pci_legacy_dev.ko:\n\
        kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko \
        kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_ring.ko \
        kernel/drivers/virtio/virtio.ko\n\
        kernel/net/9p/9pnet.ko:\n\
        kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio_ring.ko \
        kernel/drivers/virtio/virtio.ko\n";
    // 6.12's: virtio and virtio_pci are built in, modules are .ko.xz.
    const DEP_6_12: &str = "kernel/fs/netfs/netfs.ko.xz:\n\
        kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz\n\
        kernel/net/9p/9pnet.ko.xz: kernel/fs/netfs/netfs.ko.xz\n\
        kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz\n";
    const BUILTIN_6_12: &str = "kernel/drivers/virtio/virtio.ko\n\
        kernel/drivers/virtio/virtio_ring.ko\nkernel/drivers/virtio/virtio_pci.ko\n";

    fn names(order: &[String]) -> Vec<String> {
        order.iter().map(|p| module_name(p)).collect()
    }

    #[test]
    fn dependencies_come_first_and_once() {
        let order = load_order(DEP_6_1, ROOT_MODULES, Some("")).unwrap();
        assert_eq!(
            names(&order),
            [
                "virtio",
                "virtio_ring",
                "virtio_pci_legacy_dev",
                "virtio_pci_modern_dev",
                "virtio_pci",
                "9pnet",
                "9pnet_virtio",
                "netfs",
                "fscache",
                "9p"
            ]
        );
        // Every module comes after all of its dependencies.
        for (i, path) in order.iter().enumerate() {
            let line = DEP_6_1
                .lines()
                .find(|l| l.starts_with(&format!("{path}:")))
                .unwrap();
            for dep in line.split_once(':').unwrap().1.split_whitespace() {
                let j = order.iter().position(|p| p == dep).unwrap();
                assert!(j < i, "{dep} after {path}");
            }
        }
    }

    #[test]
    fn built_in_modules_are_skipped() {
        let order = load_order(DEP_6_12, ROOT_MODULES, Some(BUILTIN_6_12)).unwrap();
        assert_eq!(names(&order), ["netfs", "9pnet", "9pnet_virtio", "9p"]);
        // Without modules.builtin, a module absent from modules.dep is taken as built in.
        assert_eq!(load_order(DEP_6_12, ROOT_MODULES, None).unwrap(), order);
        // With it, a module in neither is an error naming the module.
        let err = load_order(DEP_6_12, ROOT_MODULES, Some("")).unwrap_err();
        assert!(err.to_string().contains("virtio_pci"), "{err}");
    }

    #[test]
    fn cycles_are_errors() {
        let dep = "a.ko: b.ko\nb.ko: a.ko\n";
        assert!(load_order(dep, &["a"], None).is_err());
    }

    #[test]
    fn module_names() {
        assert_eq!(
            module_name("kernel/net/9p/9pnet_virtio.ko.xz"),
            "9pnet_virtio"
        );
        assert_eq!(module_name("kernel/fs/9p/9p.ko"), "9p");
        assert_eq!(module_name("kernel/x/virtio-pci.ko.zst"), "virtio_pci");
    }

    #[test]
    fn init_uses_the_shared_names() {
        for needle in [
            HOST_ROOT_TAG,
            OUT_TAG,
            GUEST_OUT_DIR,
            PLAN_FILE,
            EXIT_MARKER,
            PROBE_ARG,
            PROBE_MARKER,
        ] {
            assert!(INIT_SCRIPT.contains(needle), "{needle}");
        }
    }
}
