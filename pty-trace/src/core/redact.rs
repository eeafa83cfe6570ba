//! Redaction of obvious secrets in command lines before they are shown or written.
//!
//! Catches `--token=...`/`--password ...` style flags, `Authorization:`/`Bearer` headers,
//! `NAME_KEY=`/`*_TOKEN=`/`*_SECRET=`/`*_PASSWORD=` assignments and credentials in URLs.
//! It is a safety net, not a guarantee: the JSONL is still created 0600.

const MASK: &str = "<redacted>";
/// Flag names (after the dashes) whose value is a secret.
const SECRET_FLAGS: &[&str] =
    &["token", "password", "passwd", "secret", "api-key", "apikey", "auth", "key", "access-token"];
/// Suffixes of `NAME=value` assignments whose value is a secret.
const SECRET_SUFFIXES: &[&str] =
    &["_KEY", "_TOKEN", "_SECRET", "_PASSWORD", "_PASSWD", "_PASS", "_CREDENTIALS"];

fn is_secret_flag(name: &str) -> bool {
    let n = name.trim_start_matches('-').to_ascii_lowercase();
    SECRET_FLAGS.iter().any(|s| n == *s || n.ends_with(&format!("-{s}")) || n.ends_with(&format!("_{s}")))
}

/// Redacts one argv. A flag like `--token` followed by a separate value masks that value.
pub fn redact_argv(argv: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let mut mask_next = false;
    for arg in argv {
        if mask_next {
            out.push(MASK.to_string());
            mask_next = false;
            continue;
        }
        if arg.starts_with('-') && !arg.contains('=') && is_secret_flag(arg) {
            mask_next = true;
            out.push(arg.clone());
            continue;
        }
        out.push(redact_text(arg));
    }
    out
}

/// Redacts secrets inside one string (an argument or a `sh -c` script).
pub fn redact_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut words = s.split_inclusive(char::is_whitespace).peekable();
    let mut mask_next = false;
    while let Some(w) = words.next() {
        let (word, ws) = split_trailing_ws(w);
        let lower = word.to_ascii_lowercase();
        if mask_next && !word.is_empty() {
            // `Authorization: Bearer TOKEN`: keep the scheme, mask what follows it.
            if matches!(lower.as_str(), "bearer" | "basic" | "token" | "digest") {
                out.push_str(word);
                out.push_str(ws);
                continue;
            }
            // Keep a closing quote so the shell text stays readable.
            let quote_at = word.trim_end_matches(['\'', '"']).len();
            out.push_str(MASK);
            out.push_str(&word[quote_at..]);
            out.push_str(ws);
            mask_next = false;
            continue;
        }
        let header_name = lower.trim_start_matches(['\'', '"']);
        if header_name == "authorization:" || header_name == "bearer" || header_name == "x-api-key:" {
            out.push_str(word);
            out.push_str(ws);
            mask_next = true;
            continue;
        }
        out.push_str(&redact_word(word));
        out.push_str(ws);
    }
    out
}

fn split_trailing_ws(w: &str) -> (&str, &str) {
    let end = w.trim_end().len();
    (&w[..end], &w[end..])
}

fn redact_word(word: &str) -> String {
    // --token=abc, API_KEY=abc, GITHUB_TOKEN=abc
    if let Some(eq) = word.find('=') {
        let name = word[..eq].trim_start_matches(['\'', '"']);
        let upper = name.to_ascii_uppercase();
        let is_flag = name.starts_with('-') && is_secret_flag(name);
        let is_env = !name.starts_with('-')
            && (SECRET_SUFFIXES.iter().any(|s| upper.ends_with(s))
                || matches!(upper.as_str(), "TOKEN" | "PASSWORD" | "SECRET" | "KEY"));
        if is_flag || is_env {
            return format!("{}={MASK}", &word[..eq]);
        }
    }
    // https://user:pass@host
    if let Some(scheme) = word.find("://") {
        let rest = &word[scheme + 3..];
        if let Some(at) = rest.find('@')
            && let Some(colon) = rest[..at].find(':')
        {
            return format!("{}{}:{MASK}{}", &word[..scheme + 3], &rest[..colon], &rest[at..]);
        }
    }
    word.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_with_equals_and_separate_values() {
        assert_eq!(
            redact_argv(&v(&["gh", "--token=abc123", "--password", "hunter2", "--verbose"])),
            v(&["gh", "--token=<redacted>", "--password", "<redacted>", "--verbose"])
        );
        assert_eq!(redact_argv(&v(&["x", "--github-token", "t"])), v(&["x", "--github-token", "<redacted>"]));
    }

    #[test]
    fn env_assignments_headers_and_urls() {
        assert_eq!(
            redact_text("OPENAI_API_KEY=sk-1 GITHUB_TOKEN=g PATH=/bin run"),
            "OPENAI_API_KEY=<redacted> GITHUB_TOKEN=<redacted> PATH=/bin run"
        );
        assert_eq!(
            redact_text("curl -H 'Authorization: Bearer abc' https://u:pw@h/x"),
            "curl -H 'Authorization: Bearer <redacted>' https://u:<redacted>@h/x"
        );
        assert_eq!(redact_text("ls -la /tmp"), "ls -la /tmp");
        assert_eq!(redact_argv(&v(&["sh", "-c", "FOO_SECRET=1 make"])), v(&["sh", "-c", "FOO_SECRET=<redacted> make"]));
    }

    #[test]
    fn harmless_arguments_unchanged() {
        let a = v(&["git", "status", "--porcelain", "key.txt", "--monkey", "a=b"]);
        assert_eq!(redact_argv(&a), a);
    }
}
