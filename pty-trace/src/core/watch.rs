//! `pty-trace watch`: which processes to follow. A process matches when any `--match` regular
//! expression finds its command name (`comm`) or its command line (argv joined by spaces),
//! and, with `--user`, it runs as that user (real uid). Pure: the tracer reads /proc and asks.

use regex::Regex;

/// The `--match` patterns and the `--user` filter.
#[derive(Clone, Debug)]
pub struct WatchRule {
    patterns: Vec<Regex>,
    uid: Option<u32>,
}

/// What the rule looks at for one process.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    pub comm: &'a str,
    pub argv: &'a [String],
    pub uid: Option<u32>,
}

impl WatchRule {
    /// Compiles the patterns; a bad one is one line naming it.
    pub fn new(patterns: &[String], uid: Option<u32>) -> Result<WatchRule, String> {
        if patterns.is_empty() {
            return Err("watch: give at least one --match REGEX".into());
        }
        let patterns = patterns
            .iter()
            .map(|p| {
                regex::RegexBuilder::new(p)
                    // Bounded: a pattern is compiled once, but its size is the user's choice.
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("--match {p:?}: not a valid regular expression: {}", one_line(&e.to_string())))
            })
            .collect::<Result<_, _>>()?;
        Ok(WatchRule { patterns, uid })
    }

    pub fn matches(&self, c: Candidate<'_>) -> bool {
        if let Some(want) = self.uid
            && c.uid != Some(want)
        {
            return false;
        }
        let line = c.argv.join(" ");
        self.patterns.iter().any(|p| p.is_match(c.comm) || (!line.is_empty() && p.is_match(&line)))
    }
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn matches_the_command_name_or_the_command_line() {
        let r = WatchRule::new(&["claude|gemini|codex|copilot".into(), "^tmux: server".into()], None).unwrap();
        let yes = |comm: &str, line: &str| r.matches(Candidate { comm, argv: &argv(line), uid: Some(0) });
        assert!(yes("node", "node /usr/lib/node_modules/@anthropic-ai/claude-code/cli.js"));
        assert!(yes("gemini", ""));
        assert!(yes("tmux: server", "tmux: server"));
        // Anchored on the command line: a client is not the server.
        assert!(!yes("tmux: client", "tmux new -s work"));
        assert!(!yes("bash", "bash -c ls"));
    }

    #[test]
    fn user_restricts_by_real_uid() {
        let r = WatchRule::new(&["agent".into()], Some(1000)).unwrap();
        let of = |uid| r.matches(Candidate { comm: "agent", argv: &[], uid });
        assert!(of(Some(1000)));
        assert!(!of(Some(0)));
        assert!(!of(None), "an unreadable owner is not the user");
    }

    #[test]
    fn bad_patterns_are_one_line_errors() {
        let e = WatchRule::new(&["(unclosed".into()], None).unwrap_err();
        assert!(e.starts_with("--match \"(unclosed\": not a valid regular expression"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(WatchRule::new(&[], None).unwrap_err().contains("at least one --match"));
    }
}
