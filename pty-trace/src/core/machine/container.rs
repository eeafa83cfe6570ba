//! A container's name from a process's cgroup path (`/proc/PID/cgroup`), the way the
//! runtimes name their scopes; a process in another mount namespace that no runtime named is
//! shown by that namespace instead.

/// Prefixes of a runtime's cgroup directory names, before the container id, and the label
/// shown for them.
const RUNTIMES: &[(&str, &str)] = &[
    ("docker-", "docker"),
    ("libpod-", "podman"),
    ("cri-containerd-", "containerd"),
    ("crio-", "cri-o"),
    ("lxc.payload.", "lxc"),
];

/// `runtime:id` (the id cut to 12 characters, as `docker ps` shows it) for a cgroup v2 path
/// (`0::/system.slice/docker-<id>.scope`) or a v1 line (`/docker/<id>`); `None` for the host's.
pub fn from_cgroup(cgroup: &str) -> Option<String> {
    // The v2 line (`0::PATH`) when there is one, else the first line.
    let path = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .or_else(|| cgroup.lines().next().and_then(|l| l.splitn(3, ':').nth(2)))?;
    for part in path.split('/').rev() {
        let part = part.strip_suffix(".scope").unwrap_or(part);
        for (prefix, name) in RUNTIMES {
            if let Some(id) = part.strip_prefix(prefix)
                && !id.is_empty()
            {
                return Some(format!("{name}:{}", short(id)));
            }
        }
    }
    // cgroup v1 and cgroupfs drivers: `/docker/<id>`, `/kubepods/.../<id>`, `/lxc/<name>`.
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for w in parts.windows(2) {
        match w[0] {
            "docker" => return Some(format!("docker:{}", short(w[1]))),
            "lxc" => return Some(format!("lxc:{}", w[1])),
            _ => {}
        }
    }
    if parts.first() == Some(&"kubepods") || parts.first().is_some_and(|p| p.starts_with("kubepods")) {
        return parts.last().map(|id| format!("k8s:{}", short(id)));
    }
    None
}

/// The label of a process in a mount namespace other than PID 1's that no runtime named.
pub fn from_mount_ns(ns_inode: u64) -> String {
    format!("mnt:{ns_inode}")
}

fn short(id: &str) -> &str {
    let end = id.char_indices().nth(12).map_or(id.len(), |(i, _)| i);
    &id[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_are_named_with_short_ids() {
        let id = "4f3c2a1b0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b";
        assert_eq!(from_cgroup(&format!("0::/system.slice/docker-{id}.scope\n")).as_deref(), Some("docker:4f3c2a1b0e9d"));
        assert_eq!(from_cgroup(&format!("0::/machine.slice/libpod-{id}.scope/container\n")).as_deref(), Some("podman:4f3c2a1b0e9d"));
        assert_eq!(
            from_cgroup(&format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-{id}.scope\n")).as_deref(),
            Some("containerd:4f3c2a1b0e9d")
        );
        assert_eq!(from_cgroup("0::/lxc.payload.web1\n").as_deref(), Some("lxc:web1"));
        assert_eq!(from_cgroup(&format!("12:pids:/docker/{id}\n11:cpu:/docker/{id}\n")).as_deref(), Some("docker:4f3c2a1b0e9d"));
    }

    #[test]
    fn the_hosts_own_cgroups_are_not_containers() {
        assert_eq!(from_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n"), None);
        assert_eq!(from_cgroup("0::/system.slice/ssh.service\n"), None);
        assert_eq!(from_cgroup("0::/\n"), None);
        assert_eq!(from_cgroup(""), None);
        assert_eq!(from_mount_ns(4026532301), "mnt:4026532301");
    }
}
