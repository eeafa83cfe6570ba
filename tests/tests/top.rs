//! Privileged end-to-end tests of `pty-trace top`: processes pty-trace did not start, holding
//! known PTYs (some orphaned, some with the slave in another process, some in a private devpts
//! instance whose indexes collide with the host's), against /proc read by the test itself.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
};

use pty_trace_tests::*;
use serde_json::Value;

/// Holds PTYs and sleeps: `ORPHANS PAIRS GIVE` masters opened through /dev/ptmx and never
/// given a slave; pairs whose slave it holds itself; pairs whose slave a child holds (its own
/// copy closed). Prints `ready PID [CHILD]` once all are open. Pairs come first unless a
/// fourth argument `orphans-first` says otherwise (indexes are handed out lowest first).
const HOLDER: &str = r#"
import os, pty, sys, time
orphans, pairs, give = (int(x) for x in sys.argv[1:4])
early = [os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY) for _ in range(orphans if sys.argv[4:] == ["orphans-first"] else 0)]
orphans -= len(early)
keep = [pty.openpty() for _ in range(pairs)]
child = 0
if give:
    given = [pty.openpty() for _ in range(give)]
    child = os.fork()
    if child == 0:
        for m, _ in given:
            os.close(m)
        for m, s in keep:
            os.close(m)
            os.close(s)
        time.sleep(float(os.environ.get("HOLD_SECONDS", "120")))
        os._exit(0)
    for _, s in given:
        os.close(s)
keep += [os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY) for _ in range(orphans)]
print("ready", os.getpid(), child, flush=True)
time.sleep(float(os.environ.get("HOLD_SECONDS", "120")))
"#;


/// A holder process (and its child), killed on drop.
struct Holder {
    child: Child,
    pid: u32,
    given_to: Option<u32>,
}

impl Holder {
    fn start(orphans: u32, pairs: u32, give: u32) -> Holder {
        Self::spawn(Command::new(python3()).args(["-c", HOLDER, &orphans.to_string(), &pairs.to_string(), &give.to_string()]))
    }

    /// The same, in a private mount namespace with its own devpts instance on /dev/pts.
    fn start_in_private_devpts(orphans: u32, pairs: u32) -> Holder {
        let script = format!(
            "mount -t devpts -o newinstance,ptmxmode=0666,max=64 devpts /dev/pts && exec {} -c '{}' {orphans} {pairs} 0 orphans-first",
            python3(),
            HOLDER.replace('\'', "'\\''")
        );
        Self::spawn(Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script]))
    }

    fn spawn(cmd: &mut Command) -> Holder {
        let mut child = cmd.stdout(Stdio::piped()).stdin(Stdio::null()).spawn().expect("starting a holder");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let f: Vec<u32> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        assert_eq!(f.len(), 2, "holder said {line:?}");
        Holder { child, pid: f[0], given_to: (f[1] != 0).then_some(f[1]) }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if let Some(c) = self.given_to {
            // SAFETY: kill(2) on a child of the holder we started.
            unsafe { libc::kill(c as i32, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ground truth from /proc for one process: (masters, slaves, orphaned masters), a master
/// orphaned when no process on the machine holds a slave of the same device (`st_dev`) and
/// index. The slave side is read with `stat`, the master's instance from the holder's own
/// namespace: `ns_devpts` gives the devpts instance at /dev/pts where the process lives.
fn truth(pid: u32, ns_devpts: u64, held_slaves: &BTreeSet<(u64, u32)>) -> (u64, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut m, mut s, mut o) = (0, 0, 0);
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let t = std::fs::read_link(e.path()).unwrap().to_string_lossy().into_owned();
        if t == "/dev/ptmx" || t == "/dev/pts/ptmx" {
            m += 1;
            let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", e.file_name().to_string_lossy())).unwrap();
            let idx: u32 = info.lines().find_map(|l| l.strip_prefix("tty-index:")).unwrap().trim().parse().unwrap();
            if !held_slaves.contains(&(ns_devpts, idx)) {
                o += 1;
            }
        } else if t.starts_with("/dev/pts/") {
            let md = std::fs::metadata(e.path()).unwrap();
            if libc::major(md.rdev()) == 136 {
                s += 1;
            }
        }
    }
    (m, s, o)
}

/// Every (devpts dev, index) whose slave some process holds, from /proc.
fn held_slaves() -> BTreeSet<(u64, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeSet::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if let Ok(md) = std::fs::metadata(fd.path())
                && libc::major(md.rdev()) == 136
            {
                out.insert((md.dev(), libc::minor(md.rdev())));
            }
        }
    }
    out
}

fn dev_string(dev: u64) -> String {
    format!("{}:{}", libc::major(dev), libc::minor(dev))
}

fn top_json() -> Value {
    let out = Command::new(pty_trace_bin()).args(["top", "--json"]).output().unwrap();
    assert!(out.status.success(), "top --json: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("top --json is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn row(doc: &Value, pid: u32) -> &Value {
    doc["processes"].as_array().unwrap().iter().find(|r| r["pid"] == pid).unwrap_or_else(|| panic!("pid {pid} not listed: {doc:#}"))
}

fn counts(r: &Value) -> (u64, u64, u64) {
    (r["masters"].as_u64().unwrap(), r["slaves"].as_u64().unwrap(), r["orphaned"].as_u64().unwrap())
}

fn pty_nr() -> u64 {
    std::fs::read_to_string("/proc/sys/kernel/pty/nr").unwrap().trim().parse().unwrap()
}

/// The tests of this file hold PTYs: one at a time, so each one's pool numbers are its own.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn top_lists_unrelated_holders_with_the_counts_proc_shows_ranked_by_masters() {
    if !root_available("top_lists_unrelated_holders_with_the_counts_proc_shows_ranked_by_masters") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let a = Holder::start(6, 0, 0); // 6 orphaned masters
    let b = Holder::start(0, 1, 3); // 4 masters: 1 slave held here, 3 by its child
    let d = Holder::start(1, 2, 0); // 3 masters, 1 orphaned, 2 slaves
    let c = b.given_to.unwrap();
    use std::os::unix::fs::MetadataExt;
    let host = std::fs::metadata("/dev/pts/ptmx").unwrap().dev();
    // The pool and the ground truth are read before and after: `top` must equal a stable state.
    let (nr0, slaves0) = (pty_nr(), held_slaves());
    let doc = top_json();
    let (nr1, slaves1) = (pty_nr(), held_slaves());
    assert_eq!((nr0, &slaves0), (nr1, &slaves1), "the machine's PTYs changed while top ran: retry on a quiet machine");
    assert_eq!(doc["machine"]["pty_nr"].as_u64(), Some(nr0), "pty/nr");
    for (pid, want) in [(a.pid, (6, 0, 6)), (b.pid, (4, 1, 0)), (c, (0, 3, 0)), (d.pid, (3, 2, 1))] {
        let got = counts(row(&doc, pid));
        assert_eq!(truth(pid, host, &slaves0), want, "pid {pid}: the holder did not set up what the test expects");
        assert_eq!(got, want, "pid {pid}: top (masters, slaves, orphaned) vs /proc");
    }
    // Ranked by masters: a (6), b (4), d (3), then c (no masters).
    let order: Vec<u32> = doc["processes"].as_array().unwrap().iter().map(|r| r["pid"].as_u64().unwrap() as u32).filter(|p| [a.pid, b.pid, c, d.pid].contains(p)).collect();
    assert_eq!(order, [a.pid, b.pid, d.pid, c]);
    let r = row(&doc, a.pid);
    assert!(r["command"].as_str().unwrap().contains("python"), "{r}");
    assert!(r["fds"].as_u64().unwrap() >= 6 && r["nofile"].as_u64().is_some(), "{r}");
    assert_eq!(r["container"], Value::Null, "a host process is not a container: {r}");
    // The host instance carries the masters held by these holders.
    let inst = doc["machine"]["devpts"].as_array().unwrap().iter().find(|i| i["devpts"] == dev_string(host)).expect("the host's devpts");
    assert_eq!(inst["host"], true);
    assert!(inst["ptys"].as_u64().unwrap() >= 13 && inst["orphaned"].as_u64().unwrap() >= 7, "{inst}");

    // The pasteable table names the same culprit first among them.
    let out = Command::new(pty_trace_bin()).args(["top", "--once"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("PTYs {nr0} of ")), "{text}");
    let line = text.lines().find(|l| l.split_whitespace().next() == Some(&a.pid.to_string())).unwrap_or_else(|| panic!("{text}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((cols[2], cols[3], cols[4]), ("6", "6", "0"), "PTM ORPH PTS of {line}");
}

#[test]
fn a_private_devpts_instance_with_colliding_indexes_is_told_apart() {
    if !root_available("a_private_devpts_instance_with_colliding_indexes_is_told_apart") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use std::os::unix::fs::MetadataExt;
    // Host: 2 pairs (slaves held), then 4 orphaned masters. Box: 2 orphaned masters, then 2
    // pairs; its instance starts at index 0, so its indexes collide with the host's.
    let host_holder = Holder::start(4, 2, 0);
    let boxed = Holder::start_in_private_devpts(2, 2);
    let host = std::fs::metadata("/dev/pts/ptmx").unwrap().dev();
    let box_dev = std::fs::metadata(format!("/proc/{}/root/dev/pts/ptmx", boxed.pid)).unwrap().dev();
    assert_ne!(host, box_dev, "the box has its own instance");
    let slaves = held_slaves();
    let doc = top_json();
    let host_want = truth(host_holder.pid, host, &slaves);
    let box_want = truth(boxed.pid, box_dev, &slaves);
    assert_eq!(host_want, (6, 2, 4));
    assert_eq!(box_want, (4, 2, 2));
    // What an index-only key gets wrong here: the box's orphans 0 and 1 have host slaves 0
    // and 1 held, the host's orphans 2 and 3 have box slaves 2 and 3 held (when the host had
    // no other PTYs; otherwise the collisions fall on other indexes).
    let idx = |dev: u64| slaves.iter().filter(|(d, _)| *d == dev).map(|(_, i)| *i).collect::<Vec<u32>>();
    eprintln!("slaves held: box {:?}, host {:?}", idx(box_dev), idx(host));
    assert_eq!(idx(box_dev), [2, 3], "the box's pairs follow its 2 orphans");
    assert_eq!(counts(row(&doc, host_holder.pid)), host_want, "host holder (masters, slaves, orphaned)");
    let r = row(&doc, boxed.pid);
    assert_eq!(counts(r), box_want, "box holder (masters, slaves, orphaned): {r}");
    assert_eq!(r["devpts"], serde_json::json!([dev_string(box_dev)]), "its instance is named: {r}");
    assert!(r["container"].as_str().is_some_and(|c| c.starts_with("mnt:")), "another mount namespace is not the host: {r}");
    let inst: BTreeMap<String, &Value> = doc["machine"]["devpts"].as_array().unwrap().iter().map(|i| (i["devpts"].as_str().unwrap().to_string(), i)).collect();
    let b = inst.get(&dev_string(box_dev)).unwrap_or_else(|| panic!("the box's instance is listed: {inst:?}"));
    assert_eq!((b["ptys"].as_u64(), b["orphaned"].as_u64(), b["max"].as_u64(), b["host"].as_bool()), (Some(4), Some(2), Some(64), Some(false)), "{b}");
}

/// Root is needed to read other processes' fds and to mount devpts; like the BPF tests these
/// fail unless a person opts out (see `bpf_available`).
fn root_available(test: &str) -> bool {
    bpf_available(test)
}

/// The same two holders as above, now in one traced session (the box one through `unshare`):
/// the session's PTY registry must judge each PTY on its own instance.
#[test]
fn a_session_spanning_two_devpts_instances_judges_orphans_per_instance() {
    if !bpf_available("a_session_spanning_two_devpts_instances_judges_orphans_per_instance") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("two-instances");
    let holder = dir.join("holder.py");
    std::fs::write(&holder, HOLDER).unwrap();
    let jsonl = dir.join("out.jsonl");
    let (py, h) = (python3(), holder.display().to_string());
    let hold = slow_ms(3000) as f64 / 1000.0;
    let script = format!(
        "export HOLD_SECONDS={hold}; {py} {h} 4 2 0 > /dev/null & \
         unshare -m --propagation private sh -c 'mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts && exec {py} {h} 2 2 0 orphans-first' > /dev/null & wait"
    );
    let out = run_traced(&jsonl, &["--interval", &interval_arg(200)], &["sh", "-c", &script]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let recs = read_jsonl(&jsonl);
    // The snapshot where both hold everything: 10 masters in the session.
    let full = of_type(&recs, "snapshot")
        .into_iter()
        .find(|s| s["ptys"].as_array().unwrap().iter().map(|p| p["masters"].as_array().unwrap().len()).sum::<usize>() == 10)
        .unwrap_or_else(|| panic!("no snapshot with all 10 masters held"));
    let ptys = full["ptys"].as_array().unwrap();
    let devs: BTreeSet<&str> = ptys.iter().filter_map(|p| p["devpts"].as_str()).collect();
    assert_eq!(devs.len(), 2, "two instances named in ptys[]: {ptys:#?}");
    let mut orphaned: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for p in ptys.iter().filter(|p| p["orphaned"] == true) {
        orphaned.entry(p["devpts"].as_str().unwrap_or("?")).or_default().push(p["index"].as_u64().unwrap());
    }
    let counts: Vec<usize> = orphaned.values().map(Vec::len).collect();
    eprintln!("orphaned by instance: {orphaned:?}");
    let mut sorted = counts.clone();
    sorted.sort();
    assert_eq!(sorted, [2, 4], "the box orphans 2 (indexes 0, 1), the host 4: {orphaned:?}");
    assert_eq!(full["totals"]["orphaned_ptys"], 6, "{}", full["totals"]);
    let box_orphans = orphaned.values().find(|v| v.len() == 2).unwrap();
    assert_eq!(box_orphans, &[0, 1], "the box's orphans take its first indexes, whose host slaves are held");
}
