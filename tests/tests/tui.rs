//! Privileged end-to-end tests of the live view: the real binary in a real terminal (tmux),
//! read back with `tmux capture-pane`, driven with `tmux send-keys`.
//!
//! They need root (BPF) and tmux. The tmux server of each test runs on its own socket and is
//! killed when the test ends, pass or fail.

use std::{
    process::{Command, Output},
    time::{Duration, Instant},
};

use pty_trace_tests::*;

/// A private tmux server with one session, `t`; killed (and its socket removed) on drop.
struct Tmux {
    socket: String,
    socket_path: Option<String>,
}

impl Tmux {
    /// Starts `cmd` in a detached `w` x `h` session. The pane stays after `cmd` exits so its
    /// last screen and exit status can be read.
    fn start(name: &str, w: u16, h: u16, cmd: &str) -> Tmux {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let mut t = Tmux { socket: format!("pty-trace-e2e-{name}-{}-{nanos}", std::process::id()), socket_path: None };
        let (w, h) = (w.to_string(), h.to_string());
        let out = t.try_run(&[
            "new-session", "-d", "-s", "t", "-x", &w, "-y", &h, cmd, ";",
            "set-option", "-t", "t", "remain-on-exit", "on", ";",
            "set-option", "-t", "t", "window-size", "manual",
        ]);
        assert!(out.status.success(), "tmux new-session failed: {}", String::from_utf8_lossy(&out.stderr));
        t.socket_path = Some(t.run(&["display-message", "-p", "#{socket_path}"]).trim().to_string()).filter(|p| !p.is_empty());
        t
    }

    fn try_run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("running tmux (is it installed?)")
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.try_run(args);
        assert!(out.status.success(), "tmux {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen as text.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    /// The screen and the scrollback above it.
    fn screen_and_history(&self) -> String {
        self.run(&["capture-pane", "-p", "-S", "-", "-t", "t"])
    }

    /// The screen with its attributes as SGR escape sequences.
    fn screen_with_styles(&self) -> String {
        self.run(&["capture-pane", "-p", "-e", "-t", "t"])
    }

    /// Key names as tmux knows them (`j`, `Enter`, `Escape`, `C-c`).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Literal text, then Enter.
    fn type_line(&self, text: &str) {
        self.run(&["send-keys", "-t", "t", "-l", text]);
        self.keys(&["Enter"]);
    }

    fn resize(&self, w: u16, h: u16) {
        self.run(&["resize-window", "-t", "t", "-x", &w.to_string(), "-y", &h.to_string()]);
    }

    /// (dead, exit status) of the pane.
    fn pane_status(&self) -> (bool, Option<i32>) {
        let s = self.run(&["display-message", "-p", "-t", "t", "#{pane_dead} #{pane_dead_status}"]);
        let mut it = s.split_whitespace();
        (it.next() == Some("1"), it.next().and_then(|x| x.parse().ok()))
    }

    /// Polls the screen until `ok` holds; panics with `what` and the last screen otherwise.
    fn wait_for(&self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + timeout;
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            if Instant::now() > until {
                panic!("timed out after {timeout:?} waiting for {what}; the screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.try_run(&["kill-server"]);
        if let Some(p) = &self.socket_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The number after `label` in `line` (`health  38` -> 38).
fn number_after(line: &str, label: &str) -> Option<u64> {
    let i = line.find(label)? + label.len();
    line[i..].trim_start().chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

/// (health, PTYs held) of the first session in the header, when shown.
fn header_numbers(screen: &str) -> Option<(u64, u64)> {
    let health = screen.lines().find(|l| l.starts_with("session "))?;
    let ptys = screen.lines().find(|l| l.contains(" held (machine "))?;
    Some((number_after(health, "health")?, number_after(ptys, "PTYs")?))
}

fn leak_shown(s: &str) -> bool {
    header_numbers(s).is_some_and(|(health, ptys)| health < 70 && ptys > 6)
}

/// SGR parameters of every escape sequence in `s`.
fn sgr_params(s: &str) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("\x1b[") {
        rest = &rest[i + 2..];
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == ';' || c == ':')).unwrap_or(rest.len());
        if rest[end..].starts_with('m') {
            out.push(rest[..end].split([';', ':']).filter_map(|p| p.parse().ok()).collect());
        }
        rest = &rest[end..];
    }
    out
}

fn has_colour(s: &str) -> bool {
    sgr_params(s).iter().flatten().any(|p| matches!(p, 30..=38 | 40..=48 | 90..=97 | 100..=107))
}

/// The tests of this file run one at a time: each drives a live tracer on a timing budget.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long pty-trace may take to exit: detaching the probes waits for RCU grace periods,
/// which takes seconds on a busy machine.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn live_view_shows_the_leak_and_gives_the_terminal_back() {
    if !bpf_available("live_view_shows_the_leak_and_gives_the_terminal_back") {
        return;
    }
    let _serial = serial();
    let bin = pty_trace_bin();
    let tmux = Tmux::start("live", 120, 40, "env -u NO_COLOR PS1='tui$ ' bash --norc --noprofile");
    tmux.wait_for("the shell prompt", Duration::from_secs(10), |s| s.contains("tui$"));
    tmux.type_line(&format!("{} demo --commands 40 --delay 150ms --interval 250ms; echo EXIT=$?", bin.display()));

    // The view comes up and shows the leak growing.
    let s = tmux.wait_for("health < 70 and more than 6 PTYs held", Duration::from_secs(30), leak_shown);
    let (health, ptys) = header_numbers(&s).unwrap();
    eprintln!("the view at health {health}, {ptys} PTYs held:\n{s}");
    for want in ["pty-trace", "machine PTYs", "lost events", "drift", "LEAK DETECTED", "processes", "alerts & decisions", "q quit", "? help"] {
        assert!(s.contains(want), "{want:?} not on the screen:\n{s}");
    }
    // The agent's row is marked as leaking (`!`) and the screen is in colour.
    let root = s.lines().find_map(|l| l.strip_prefix("session ")).and_then(|r| r.split_whitespace().next()).unwrap();
    assert!(s.lines().any(|l| l.starts_with(&format!("│! {root} ")) && l.contains("pty-trace __demo-agent")), "no leaking row marked:\n{s}");
    assert!(has_colour(&tmux.screen_with_styles()), "no colour without NO_COLOR");

    // j then k: back on the agent (the tree's root), Enter: its fds.
    tmux.keys(&["j"]);
    tmux.keys(&["k"]);
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("the details pane with PTY masters", Duration::from_secs(10), |s| {
        s.contains("OPENED BY") && s.contains("pty_master")
    });
    assert!(s.contains("/dev/ptmx (pts/") && s.contains("orphaned"), "{s}");
    assert!(s.lines().any(|l| l.contains("pty_master") && l.contains("__demo-agent")), "the opening command is shown:\n{s}");

    // Esc closes the details and keeps the view.
    tmux.keys(&["Escape"]);
    let s = tmux.wait_for("the details pane to close", Duration::from_secs(10), |s| !s.contains("OPENED BY"));
    assert!(s.contains("q quit") && s.contains("processes"), "Esc should only close the details:\n{s}");

    // q stops the run: the summary is printed on the normal screen and the shell comes back.
    tmux.keys(&["q"]);
    tmux.wait_for("pty-trace to exit", EXIT_TIMEOUT, |s| s.lines().any(|l| l.starts_with("EXIT=")));
    let s = tmux.screen_and_history();
    assert!(s.contains("pty-trace: session") && s.contains("LEAK DETECTED"), "no summary:\n{s}");
    eprintln!("summary: {}", s.lines().find(|l| l.starts_with("pty-trace: session")).unwrap_or(""));
    assert!(
        s.contains("(interrupted)"),
        "the run was not stopped by q (the demo ended first? the machine may be too slow for this timing):\n{s}"
    );
    assert!(!s.contains("q quit") && !s.contains("alerts & decisions"), "the view is still on the screen:\n{s}");
    assert!(!s.contains("panicked"), "{s}");

    assert_terminal_restored(&tmux, "after q");
}

/// The shell in the pane runs commands and the tty is back in cooked mode, on the main screen.
fn assert_terminal_restored(tmux: &Tmux, when: &str) {
    let alt = tmux.run(&["display-message", "-p", "-t", "t", "#{alternate_on}"]);
    assert_eq!(alt.trim(), "0", "{when}: the alternate screen is still on");
    tmux.type_line("clear; echo \"MODES: $(stty -a | tr ' ;' '\\n\\n' | grep -xE -- '-?(icanon|echo|isig|icrnl|opost)' | tr '\\n' ' ')\"; echo READY-$((6*7))");
    let s = tmux.wait_for("READY-42", Duration::from_secs(10), |s| s.lines().any(|l| l.trim() == "READY-42"));
    let modes: Vec<&str> = s
        .lines()
        .find_map(|l| l.strip_prefix("MODES: "))
        .unwrap_or_else(|| panic!("{when}: no stty output:\n{s}"))
        .split_whitespace()
        .collect();
    for m in ["icanon", "echo", "isig", "icrnl", "opost"] {
        assert!(modes.contains(&m), "{when}: {m} not restored: stty modes {modes:?}");
    }
    assert!(!tmux.pane_status().0, "{when}: the shell is still alive");
}

/// Issue 12 row 5: closing a terminal or tmux pane (SIGHUP) and Ctrl-\\ (SIGQUIT) end the
/// live view like SIGTERM: the `run` child and what it started are stopped, the summary is
/// printed and the terminal is given back (raw mode off, main screen).
#[test]
fn sighup_and_sigquit_give_the_terminal_back_and_stop_the_child() {
    if !bpf_available("sighup_and_sigquit_give_the_terminal_back_and_stop_the_child") {
        return;
    }
    let _serial = serial();
    let bin = pty_trace_bin();
    for (sig, name) in [(libc::SIGHUP, "SIGHUP"), (libc::SIGQUIT, "SIGQUIT")] {
        let row = format!("issue 12 row 5 ({name}, live view)");
        let tmux = Tmux::start(&format!("sig{sig}"), 160, 30, "env PS1='tui$ ' bash --norc --noprofile");
        tmux.wait_for("the shell prompt", Duration::from_secs(10), |s| s.contains("tui$"));
        let marker = format!("{}.{}", 500 + sig, std::process::id() % 100_000);
        tmux.type_line(&format!("{} run -- bash -c 'sleep {marker}1 & sleep {marker}2'; echo \"E\"XIT=$?", bin.display()));
        tmux.wait_for("the live view", Duration::from_secs(30), |s| s.contains("q quit") && s.contains("session "));
        let pids = |needle: &str| -> Vec<i32> {
            let out = Command::new("pgrep").args(["-f", needle]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect()
        };
        let tracer = pids(&format!("pty-trace run -- bash -c sleep {marker}"));
        assert_eq!(tracer.len(), 1, "{row}: find pty-trace: {tracer:?}");
        // SAFETY: plain kill(2).
        unsafe { libc::kill(tracer[0], sig) };
        tmux.wait_for(&format!("{row}: pty-trace to exit"), EXIT_TIMEOUT, |s| s.lines().any(|l| l.starts_with("EXIT=")));
        let s = tmux.screen_and_history();
        assert!(s.contains("pty-trace: session") && s.contains("(interrupted)"), "{row}: no summary:\n{s}");
        assert!(s.contains("EXIT=143"), "{row}: exit with the child's SIGTERM status:\n{s}");
        assert!(!s.contains("panicked"), "{row}: {s}");
        assert_terminal_restored(&tmux, &row);
        assert!(pids(&format!("sleep {marker}")).is_empty(), "{row}: the run's processes were left running");
    }
}

#[test]
fn live_view_survives_resizes_pauses_and_honours_no_color() {
    if !bpf_available("live_view_survives_resizes_pauses_and_honours_no_color") {
        return;
    }
    let _serial = serial();
    let bin = pty_trace_bin();
    // Run directly in the pane (no shell), long enough to play with it.
    let cmd = format!("env NO_COLOR=1 {} demo --commands 400 --delay 100ms --interval 250ms", bin.display());
    let tmux = Tmux::start("resize", 120, 40, &cmd);
    let s = tmux.wait_for("health < 70 and more than 6 PTYs held", Duration::from_secs(30), leak_shown);
    assert!(s.contains("LEAK DETECTED"), "{s}");

    // NO_COLOR: attributes such as bold and reverse, but no colours.
    let styled = tmux.screen_with_styles();
    assert!(!has_colour(&styled), "colours drawn with NO_COLOR: {:?}", sgr_params(&styled));
    assert!(sgr_params(&styled).iter().flatten().any(|p| *p == 1), "expected bold text");

    // p pauses the display: the numbers stop moving while tracing goes on.
    tmux.keys(&["p"]);
    let s = tmux.wait_for("the PAUSED marker", Duration::from_secs(10), |s| s.contains("PAUSED"));
    let frozen = header_numbers(&s);
    std::thread::sleep(Duration::from_millis(1200));
    let s = tmux.screen();
    assert_eq!(header_numbers(&s), frozen, "the display changed while paused:\n{s}");
    tmux.keys(&["p"]);
    tmux.wait_for("the display to resume", Duration::from_secs(10), |s| !s.contains("PAUSED") && header_numbers(s) != frozen);

    // Resizes: the layout follows the size; tiny sizes get a compact summary, no panic.
    tmux.resize(80, 24);
    let s = tmux.wait_for("the 80x24 layout", Duration::from_secs(10), |s| {
        let lines: Vec<&str> = s.lines().collect();
        lines.len() == 24 && lines[23].starts_with("q quit") && s.contains("LEAK DETECTED")
    });
    assert!(s.lines().all(|l| l.chars().count() <= 80), "{s}");
    assert!(leak_shown(&s), "{s}");
    tmux.resize(20, 5);
    tmux.wait_for("the compact view", Duration::from_secs(10), |s| s.starts_with("pty-trace") && s.contains("health"));
    tmux.resize(200, 60);
    let s = tmux.wait_for("the 200x60 layout", Duration::from_secs(10), |s| {
        s.lines().count() == 60 && s.lines().any(|l| l.contains(" processes ") && l.contains(" PTYs "))
    });
    assert!(leak_shown(&s), "{s}");
    assert!(!tmux.pane_status().0, "pty-trace died during the resizes:\n{s}");

    // A key typed while the terminal is being resized is not lost (crossterm 0.28's reader
    // dropped it until the next key came): resize and type in one tmux command, then the help
    // must show; Esc closes it.
    for (w, h) in [(180, 50), (200, 60), (180, 50), (200, 60)] {
        tmux.run(&["resize-window", "-t", "t", "-x", &w.to_string(), "-y", &h.to_string(), ";", "send-keys", "-t", "t", "?"]);
        tmux.wait_for(&format!("the help after a resize to {w}x{h}"), Duration::from_secs(10), |s| {
            s.contains("cycle sort") && s.lines().count() == h
        });
        tmux.keys(&["Escape"]);
        tmux.wait_for("the help to close", Duration::from_secs(10), |s| !s.contains("cycle sort") && s.contains("q quit"));
    }

    // Quit with Ctrl-C (a key in raw mode, not a signal).
    tmux.keys(&["C-c"]);
    let until = Instant::now() + EXIT_TIMEOUT;
    let status = loop {
        match tmux.pane_status() {
            (true, st) => break st,
            _ if Instant::now() > until => panic!("pty-trace did not exit after Ctrl-C:\n{}", tmux.screen()),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let s = tmux.screen_and_history();
    assert_ne!(status, Some(101), "pty-trace panicked:\n{s}");
    assert!(!s.contains("panicked"), "{s}");
    assert!(s.contains("pty-trace: session") && s.contains("(interrupted)"), "no summary after Ctrl-C:\n{s}");
}

/// `pty-trace top` in a real terminal: the holder of the most PTY masters is on screen, Enter
/// attaches to it (the session view of its tree), Esc comes back to `top`, q gives the
/// terminal back.
#[test]
fn top_shows_the_holders_and_enter_attaches_esc_returns_q_restores() {
    if !bpf_available("top_shows_the_holders_and_enter_attaches_esc_returns_q_restores") {
        return;
    }
    let _serial = serial();
    let bin = pty_trace_bin();
    // A process pty-trace did not start, holding 9 orphaned masters (more than any tmux pane).
    let mut holder = Command::new("python3")
        .args(["-c", "import os,time\nk=[os.open('/dev/ptmx',os.O_RDWR|os.O_NOCTTY) for _ in range(9)]\nprint(os.getpid(),flush=True)\ntime.sleep(120)"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.take().unwrap()), &mut line).unwrap();
    let pid: u32 = line.trim().parse().unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _holder = Kill(holder);
    let tmux = Tmux::start("top", 140, 40, "env -u NO_COLOR PS1='top$ ' bash --norc --noprofile");
    tmux.wait_for("the shell prompt", Duration::from_secs(10), |s| s.contains("top$"));
    tmux.type_line(&format!("{} top --interval 500ms; echo EXIT=$?", bin.display()));
    let row = |s: &str| s.lines().any(|l| l.split_whitespace().nth(1) == Some(&pid.to_string()) && l.contains("python3"));
    let s = tmux.wait_for("the holder's row", Duration::from_secs(20), |s| s.contains("holders") && row(s));
    eprintln!("top:\n{s}");
    for want in ["pty-trace top", "PTYs ", "of ", "devpts ", "PTM", "ORPH", "Enter attach"] {
        assert!(s.contains(want), "{want:?} not on the screen:\n{s}");
    }
    let first = s.lines().find(|l| l.starts_with("│") && l.contains("python3")).unwrap();
    assert!(first.contains(&pid.to_string()) && first.contains("   9     9 "), "the holder ranks first with 9 masters, 9 orphaned:\n{s}");

    // Enter: the session view of the holder.
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("the session view of the holder", EXIT_TIMEOUT, |s| s.contains(&format!("session {pid}")) && s.contains("processes"));
    assert!(s.contains("q quit"), "{s}");
    // Esc detaches and `top` comes back.
    tmux.keys(&["Escape"]);
    let s = tmux.wait_for("top again", EXIT_TIMEOUT, |s| s.contains("holders") && s.contains("Enter attach") && row(s));
    assert!(!s.contains(&format!("session {pid}")), "{s}");
    // q quits and gives the terminal back.
    tmux.keys(&["q"]);
    let s = tmux.wait_for("pty-trace to exit", EXIT_TIMEOUT, |s| s.lines().any(|l| l.starts_with("EXIT=")));
    assert!(s.contains("EXIT=0"), "{s}");
    assert!(!s.contains("panicked"), "{s}");
    assert_terminal_restored(&tmux, "after top's q");

    // SIGTERM while attached ends the session and `top` with it (not a return to `top`).
    tmux.type_line("clear");
    tmux.type_line(&format!("{} top --interval 500ms; echo EXIT2=$?", bin.display()));
    tmux.wait_for("top again", Duration::from_secs(20), |s| s.contains("holders") && row(s));
    tmux.keys(&["Enter"]);
    tmux.wait_for("the session view again", EXIT_TIMEOUT, |s| s.contains(&format!("session {pid}")) && s.contains("processes"));
    let st = Command::new("pkill").args(["-TERM", "-f", "pty-trace top --interval 500ms"]).status().unwrap();
    assert!(st.success(), "no pty-trace top to signal");
    let s = tmux.wait_for("pty-trace to exit on SIGTERM", EXIT_TIMEOUT, |s| s.lines().any(|l| l.starts_with("EXIT2=")));
    assert!(s.contains("EXIT2=0") && !s.contains("panicked"), "{s}");
    assert_terminal_restored(&tmux, "after SIGTERM while attached");
}
