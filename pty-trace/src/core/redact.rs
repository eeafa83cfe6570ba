//! Redaction of secrets in command lines before they are shown or written: the model's argv
//! (JSONL, live view, report), `start.command`, the hook's argv and the
//! `PTY_TRACE_DEBUG_EVENTS` print all go through here.
//!
//! What is masked, in an argv ([`redact_argv`]) and in shell text ([`redact_text`]: a `sh -c`
//! script, split into words the way the shell would, its quotes kept):
//! - the value of a secret flag: `--token X`, `--password=X`, `-Dfoo.password=X` (a flag whose
//!   last word is token, password, secret, key, auth, pass, ...); `--password-stdin` and
//!   `--token-file` name no secret;
//! - `NAME=value` of secret names: `*_TOKEN`, `*_KEY`, `*_SECRET`, `PGPASSWORD`, `MYSQL_PWD`, ...;
//! - header values, any case, with or without a space after the colon, alone or after
//!   `--header=`, `-H` or `name=`: `Authorization`, `Proxy-Authorization`, `Cookie`,
//!   `Set-Cookie`, `X-Api-Key`, `X-Auth-Token`, any name with token/auth/secret/password/cookie
//!   or ending in `-key` (the scheme, `Bearer`/`Basic`, is kept);
//! - URL userinfo of any scheme: `https://u:<redacted>@h`, and a bare token
//!   `https://<redacted>@h` (only `git@` is kept); secret query parameters (`?access_token=`);
//! - openssl's `-passin`/`-passout`/`-pass pass:X` (`env:`, `file:`, `fd:`, `stdin` are kept);
//! - per program, the short flags that are passwords there ([`Program`]): `mysql -pX` and
//!   `-p X`, `sshpass -p`, `docker`/`podman login -p`, `curl -u user:X`, `redis-cli -a`,
//!   `ldapsearch -w`, `zip -P`, `7z -pX`, `smbclient -U user%X`, ... The program is any earlier
//!   word of the same command (argv[0], or after `env`, `sudo`, `true`), so `-p 8080` of other
//!   programs is kept.
//!
//! Words that hold shell text themselves (the script of `sh -c`, a quoted argument with spaces)
//! are searched again, a few levels deep. It is a safety net, not a guarantee: the JSONL is
//! still created 0600.

use std::ops::Range;

const MASK: &str = "<redacted>";
/// How many levels of shell text inside a word are searched (`bash -c "sh -c '...'"`).
const MAX_DEPTH: usize = 4;

/// Last words of flag names (after `-`, `_` or `.`) whose value is a secret.
const SECRET_FLAG_WORDS: &[&str] =
    &["token", "password", "passwd", "secret", "apikey", "auth", "key", "pass", "passphrase", "cookie", "bearer"];
/// Last words of `NAME=value` names whose value is a secret.
const SECRET_NAME_WORDS: &[&str] = &[
    "token", "password", "passwd", "pass", "pwd", "secret", "key", "apikey", "auth", "credentials", "credential", "passphrase",
    "cookie",
];
/// Endings of names that are secrets without a separator (`PGPASSWORD`, `GHTOKEN`).
const SECRET_NAME_ENDINGS: &[&str] = &["password", "passwd", "apikey", "token", "secret"];
/// openssl's password-source flags: only a `pass:` value is the secret itself.
const OPENSSL_PASS_FLAGS: &[&str] = &["-passin", "-passout", "-pass"];
/// Authorization schemes kept before the credentials they introduce.
const SCHEMES: &[&str] = &["bearer", "basic", "token", "digest", "negotiate", "bot"];

/// Redacts one argv.
pub fn redact_argv(argv: &[String]) -> Vec<String> {
    let words: Vec<&str> = argv.iter().map(String::as_str).collect();
    let repls = word_repls(&words, MAX_DEPTH);
    argv.iter().zip(repls).map(|(arg, r)| render(arg, r)).collect()
}

/// Redacts secrets inside one string of shell text (a `sh -c` script, a hook command line).
pub fn redact_text(s: &str) -> String {
    render(s, script_repls(s, MAX_DEPTH))
}

/// One replacement: `range` of the text becomes `text` (the mask, and any quote it must close
/// or open so that the text around it keeps its quoting).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Repl {
    range: Range<usize>,
    text: String,
}

impl Repl {
    fn mask(range: Range<usize>) -> Repl {
        Repl { range, text: MASK.to_string() }
    }
}

fn render(s: &str, mut repls: Vec<Repl>) -> String {
    if repls.is_empty() {
        return s.to_string();
    }
    repls.sort_by_key(|r| r.range.start);
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for r in repls {
        out.push_str(&s[at..r.range.start]);
        out.push_str(&r.text);
        at = r.range.end;
    }
    out.push_str(&s[at..]);
    out
}

/// Sorted, overlapping replacements joined into one mask each.
fn merge(mut repls: Vec<Repl>) -> Vec<Repl> {
    repls.retain(|r| !r.range.is_empty());
    repls.sort_by_key(|r| (r.range.start, std::cmp::Reverse(r.range.end)));
    let mut out: Vec<Repl> = Vec::with_capacity(repls.len());
    for r in repls {
        match out.last_mut() {
            Some(last) if r.range.start < last.range.end => {
                if r.range.end > last.range.end {
                    last.range.end = r.range.end;
                    last.text = MASK.to_string();
                }
            }
            _ => out.push(r),
        }
    }
    out
}

/// Replacements in each of the words of one command (an argv, or one command of a script),
/// in each word's own coordinates: what the rules find, and what a word holding shell text
/// holds in turn.
fn word_repls(words: &[&str], depth: usize) -> Vec<Vec<Repl>> {
    let mut masks = vec![Vec::new(); words.len()];
    command_masks(words, &mut masks);
    words
        .iter()
        .zip(masks)
        .enumerate()
        .map(|(i, (w, m))| {
            let nested = depth > 0 && holds_shell_text(w);
            // The script of `sh -c` is only shell text: `FOO_SECRET=1 make` masks the `1`.
            let script = nested && i > 0 && is_script_flag(words[i - 1]);
            let mut repls: Vec<Repl> = if script { Vec::new() } else { m.into_iter().map(Repl::mask).collect() };
            if nested {
                repls.extend(script_repls(w, depth - 1));
            }
            merge(repls)
        })
        .collect()
}

/// `-c` and the clusters that end in it (`-lc`, `-ec`): the next word is a script.
fn is_script_flag(w: &str) -> bool {
    w.len() >= 2 && w.starts_with('-') && !w.starts_with("--") && w.ends_with('c')
}

fn holds_shell_text(w: &str) -> bool {
    w.contains(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '\\'))
}

/// Replacements in shell text, in its coordinates.
fn script_repls(s: &str, depth: usize) -> Vec<Repl> {
    let tokens = tokenize(s);
    let mut out = Vec::new();
    for command in tokens.split(|t| t.op) {
        let words: Vec<&str> = command.iter().map(|t| t.value.as_str()).collect();
        for (t, repls) in command.iter().zip(word_repls(&words, depth)) {
            out.extend(repls.into_iter().filter_map(|r| t.to_source(r)));
        }
    }
    out
}

// ---- Shell words ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

impl Quote {
    fn char(self) -> &'static str {
        match self {
            Quote::None => "",
            Quote::Single => "'",
            Quote::Double => "\"",
        }
    }
}

/// Where one character of a word's value came from in the shell text.
#[derive(Clone, Copy, Debug)]
struct Src {
    /// Its byte offset in the value.
    at: usize,
    /// Its bytes in the text (a backslash escaping it included).
    start: usize,
    end: usize,
    quote: Quote,
}

/// A word of shell text (its value, quotes removed) or a control operator (`;`, `&`, `|`,
/// `(`, `)`, a newline), which ends a command.
#[derive(Debug, Default)]
struct Token {
    value: String,
    op: bool,
    chars: Vec<Src>,
}

impl Token {
    /// A replacement in the value, moved to the text it came from.
    fn to_source(&self, r: Repl) -> Option<Repl> {
        let first = self.chars.partition_point(|c| c.at < r.range.start);
        let last = self.chars.partition_point(|c| c.at < r.range.end).checked_sub(1)?;
        let (a, b) = (self.chars.get(first)?, self.chars.get(last)?);
        if first > last {
            return None;
        }
        let mut text = r.text;
        if a.quote != b.quote {
            // The mask starts inside one quoting and the text goes on in another.
            text.push_str(a.quote.char());
            text.push_str(b.quote.char());
        }
        Some(Repl { range: a.start..b.end, text })
    }
}

/// Splits shell text into words and operators: quotes and backslashes as the shell reads
/// them; no expansion. Unbalanced quotes run to the end.
fn tokenize(s: &str) -> Vec<Token> {
    fn push(cur: &mut Option<Token>, c: char, start: usize, end: usize, quote: Quote) {
        let t = cur.get_or_insert_with(Token::default);
        t.chars.push(Src { at: t.value.len(), start, end, quote });
        t.value.push(c);
    }
    let mut out = Vec::new();
    let mut cur: Option<Token> = None;
    let mut quote = Quote::None;
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        let end = i + c.len_utf8();
        match quote {
            Quote::Single if c == '\'' => quote = Quote::None,
            Quote::Single => push(&mut cur, c, i, end, quote),
            Quote::Double if c == '"' => quote = Quote::None,
            Quote::Double => match it.peek() {
                Some(&(j, n)) if c == '\\' && matches!(n, '"' | '\\' | '$' | '`') => {
                    it.next();
                    push(&mut cur, n, i, j + n.len_utf8(), quote);
                }
                _ => push(&mut cur, c, i, end, quote),
            },
            Quote::None => match c {
                '\'' | '"' => {
                    cur.get_or_insert_with(Token::default);
                    quote = if c == '\'' { Quote::Single } else { Quote::Double };
                }
                '\\' => match it.next() {
                    Some((_, '\n')) => {}
                    Some((j, n)) => push(&mut cur, n, i, j + n.len_utf8(), quote),
                    None => push(&mut cur, c, i, end, quote),
                },
                '\n' | ';' | '&' | '|' | '(' | ')' => {
                    out.extend(cur.take());
                    out.push(Token { op: true, ..Token::default() });
                }
                c if c.is_whitespace() => out.extend(cur.take()),
                c => push(&mut cur, c, i, end, quote),
            },
        }
    }
    out.extend(cur.take());
    out
}

// ---- The rules ----

/// What the next word is, after a flag that takes a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// All of it.
    Whole,
    /// `user:secret`.
    AfterColon,
    /// `user%secret` (Samba).
    AfterPercent,
    /// openssl's `pass:secret` (other sources name no secret).
    PassPrefix,
    /// Only a `name=value` (curl's `-b`: a cookie, or else a cookie file).
    IfAssignment,
    /// A header value: an optional scheme, then the secret.
    HeaderValue,
}

/// The mask for `v` taken as `next`, and what the word after it is, if it is still pending
/// (`Authorization:` `Bearer` `TOKEN` as three words).
fn next_mask(next: Next, v: &str) -> (Option<Range<usize>>, Option<Next>) {
    let non_empty = |r: Range<usize>| (!r.is_empty()).then_some(r);
    let after = |sep: char| v.find(sep).and_then(|i| non_empty(i + 1..v.len()));
    match next {
        Next::Whole => (non_empty(0..v.len()), None),
        Next::AfterColon => (after(':'), None),
        Next::AfterPercent => (after('%'), None),
        Next::PassPrefix => (v.starts_with("pass:").then(|| non_empty(5..v.len())).flatten(), None),
        Next::IfAssignment => (v.contains('=').then(|| non_empty(0..v.len())).flatten(), None),
        Next::HeaderValue => header_value(v, 0),
    }
}

/// Programs where a short flag is a password (by the basename of a word of the command).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Program {
    Other,
    /// mysql, mysqldump, mysqladmin, mariadb, mariadb-dump, ...: `-pSECRET`, `-p SECRET`.
    Mysql,
    /// `sshpass -p SECRET cmd...`.
    Sshpass,
    /// Registry and cloud logins (`docker login -p`): `-p` only after `login`.
    Login,
    /// mongo, mongosh, mongodump, ...: `-p SECRET`.
    Mongo,
    /// ldapsearch, ldapmodify, ...: `-w SECRET`.
    Ldap,
    /// redis-cli: `-a SECRET`.
    Redis,
    /// zip, unzip: `-P SECRET`.
    Zip,
    /// 7z, rar: `-pSECRET` (a bare `-p` asks for it).
    SevenZip,
    /// sqlcmd, bcp: `-P SECRET`.
    Sqlcmd,
    /// curl: `-u user:SECRET`, `--user`, `--proxy-user`, `-b name=value`.
    Curl,
    /// smbclient, rpcclient: `-U user%SECRET`.
    Smb,
    /// openssl: `-k SECRET`, `-K HEX`.
    Openssl,
}

fn program(word: &str) -> Option<Program> {
    if word.is_empty() || word.starts_with('-') || word.contains('=') {
        return None;
    }
    let base = word.rsplit('/').next().unwrap_or(word);
    // A family of tools: the prefix and lowercase letters (`mysqldump`, not `mysql-host`).
    let family = |prefix: &str| base.strip_prefix(prefix).is_some_and(|r| r.bytes().all(|b| b.is_ascii_lowercase()));
    Some(match base {
        _ if family("mysql") || family("mariadb") || family("mariadb-") => Program::Mysql,
        "sshpass" => Program::Sshpass,
        "docker" | "podman" | "nerdctl" | "buildah" | "skopeo" | "helm" | "oc" | "az" | "cf" | "crane" | "regctl" => Program::Login,
        _ if family("mongo") => Program::Mongo,
        _ if family("ldap") => Program::Ldap,
        "redis-cli" | "valkey-cli" | "keydb-cli" => Program::Redis,
        "zip" | "unzip" | "zipcloak" => Program::Zip,
        "7z" | "7za" | "7zr" | "7zz" | "rar" | "unrar" => Program::SevenZip,
        "sqlcmd" | "bcp" => Program::Sqlcmd,
        "curl" => Program::Curl,
        "smbclient" | "rpcclient" | "smbcacls" | "smbget" => Program::Smb,
        "openssl" => Program::Openssl,
        _ => return None,
    })
}

/// A flag of one program whose value is a secret: as the next word (`separate`) and/or
/// attached to the flag (`-pSECRET`).
struct Flag {
    name: &'static str,
    next: Next,
    separate: bool,
    attached: bool,
}

const fn flag(name: &'static str, next: Next, separate: bool, attached: bool) -> Flag {
    Flag { name, next, separate, attached }
}

const PASSWORD_P: &[Flag] = &[flag("-p", Next::Whole, true, true)];
const LDAP: &[Flag] = &[flag("-w", Next::Whole, true, true)];
const REDIS: &[Flag] = &[flag("-a", Next::Whole, true, false)];
const ZIP: &[Flag] = &[flag("-P", Next::Whole, true, false)];
const SEVEN_ZIP: &[Flag] = &[flag("-p", Next::Whole, false, true)];
const SQLCMD: &[Flag] = &[flag("-P", Next::Whole, true, true)];
const CURL: &[Flag] = &[
    flag("-u", Next::AfterColon, true, true),
    flag("-U", Next::AfterColon, true, true),
    flag("--user", Next::AfterColon, true, false),
    flag("--proxy-user", Next::AfterColon, true, false),
    flag("-b", Next::IfAssignment, true, true),
];
const SMB: &[Flag] = &[flag("-U", Next::AfterPercent, true, true), flag("--user", Next::AfterPercent, true, false)];
const OPENSSL: &[Flag] = &[flag("-k", Next::Whole, true, false), flag("-K", Next::Whole, true, false)];

fn program_flags(p: Program, login: bool) -> &'static [Flag] {
    match p {
        Program::Mysql | Program::Sshpass | Program::Mongo => PASSWORD_P,
        Program::Login if login => PASSWORD_P,
        Program::Ldap => LDAP,
        Program::Redis => REDIS,
        Program::Zip => ZIP,
        Program::SevenZip => SEVEN_ZIP,
        Program::Sqlcmd => SQLCMD,
        Program::Curl => CURL,
        Program::Smb => SMB,
        Program::Openssl => OPENSSL,
        Program::Login | Program::Other => &[],
    }
}

/// Finds the masks of one command's words (see the module doc).
fn command_masks(words: &[&str], masks: &mut [Vec<Range<usize>>]) {
    let mut pending: Option<Next> = None;
    let mut prog = Program::Other;
    let mut login = false;
    for (&w, m) in words.iter().zip(masks.iter_mut()) {
        if let Some(next) = pending.take() {
            let (r, again) = next_mask(next, w);
            let found = r.is_some() || again.is_some();
            m.extend(r);
            pending = again;
            if found {
                continue;
            }
        }
        if prog == Program::Login && w == "login" {
            login = true;
        } else if let Some(p) = program(w) {
            (prog, login) = (p, false);
        } else if prog == Program::Sshpass && !w.starts_with('-') {
            // sshpass's options end where the command it runs begins.
            prog = Program::Other;
        }
        if w.len() > 1 && w.starts_with('-') {
            if OPENSSL_PASS_FLAGS.contains(&w) {
                pending = Some(Next::PassPrefix);
                continue;
            }
            let flags = program_flags(prog, login);
            if let Some(f) = flags.iter().find(|f| f.separate && w == f.name) {
                pending = Some(f.next);
                continue;
            }
            if let Some((f, value_at)) = flags.iter().find_map(|f| attached_value(f, w).map(|at| (f, at))) {
                if let (Some(r), _) = next_mask(f.next, &w[value_at..]) {
                    m.push(r.start + value_at..r.end + value_at);
                }
                continue;
            }
            if !w.contains('=') && is_secret_flag(w) {
                pending = Some(Next::Whole);
                continue;
            }
        }
        let next = word_masks(w, m);
        if pending.is_none() {
            pending = next;
        }
    }
}

/// Where the value of `f` starts in `w`, when `w` is the flag with its value attached
/// (`-pSECRET`, `--user=a:b`).
fn attached_value(f: &Flag, w: &str) -> Option<usize> {
    let rest = w.strip_prefix(f.name).filter(|r| !r.is_empty())?;
    if f.name.starts_with("--") {
        rest.starts_with('=').then_some(f.name.len() + 1)
    } else {
        (f.attached && !w.starts_with("--")).then_some(f.name.len())
    }
}

fn is_secret_flag(w: &str) -> bool {
    let name = w.trim_start_matches('-').to_ascii_lowercase();
    // `--with-token`, `--no-password`: switches, not flags with a value.
    if name.starts_with("with-") || name.starts_with("no-") {
        return false;
    }
    let last = name.rsplit(['-', '_', '.']).next().unwrap_or("");
    SECRET_FLAG_WORDS.contains(&last) || name.ends_with("password") || name.ends_with("passwd")
}

/// A `NAME=value` name (an environment variable, a config key) that holds a secret.
fn is_secret_name(name: &str) -> bool {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return false;
    }
    let n = name.to_ascii_lowercase();
    let last = n.rsplit(['-', '_', '.']).next().unwrap_or("");
    SECRET_NAME_WORDS.contains(&last) || SECRET_NAME_ENDINGS.iter().any(|e| n.ends_with(e)) || n == "sshpass"
}

fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(n.as_str(), "authorization" | "proxy-authorization" | "cookie" | "set-cookie" | "private-token")
        || ["token", "auth", "secret", "password", "passwd", "apikey", "api-key", "cookie"].iter().any(|w| n.contains(w))
        || n.ends_with("-key")
}

/// Masks inside one word wherever it appears; returns what the next word is when this one
/// announces it (`Authorization:` or `Bearer` alone).
fn word_masks(w: &str, m: &mut Vec<Range<usize>>) -> Option<Next> {
    let mut pending = None;
    let eq = w.find('=');
    // NAME=value, --flag=value
    if let Some(eq) = eq
        && eq + 1 < w.len()
    {
        let name = &w[..eq];
        let secret = if name.starts_with('-') { is_secret_flag(name) } else { is_secret_name(name) };
        if secret {
            m.push(eq + 1..w.len());
        }
    }
    // Headers: at the start, after `--header=` or `name=`, or attached to `-H`.
    let starts = [Some(0), eq.map(|e| e + 1), w.starts_with("-H").then_some(2)];
    for at in starts.into_iter().flatten() {
        if let Some(colon) = secret_header_at(w, at) {
            let (r, next) = header_value(&w[colon + 1..], 0);
            m.extend(r.map(|r| r.start + colon + 1..r.end + colon + 1));
            pending = pending.or(next);
        }
    }
    // `Bearer TOKEN` as one word, or `Bearer` alone.
    if let Some(rest) = w.get(..6).filter(|b| b.eq_ignore_ascii_case("bearer")).map(|_| &w[6..]) {
        if rest.is_empty() {
            pending = pending.or(Some(Next::Whole));
        } else if rest.starts_with(char::is_whitespace) {
            let at = w.len() - rest.trim_start().len();
            if at < w.len() {
                m.push(at..w.len());
            }
        }
    }
    url_masks(w, m);
    pending
}

/// The colon after a secret header name starting at `at` in `w`.
fn secret_header_at(w: &str, at: usize) -> Option<usize> {
    let rest = w.get(at..)?;
    let n = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).unwrap_or(rest.len());
    (n > 0 && rest[n..].starts_with(':') && is_secret_header(&rest[..n])).then_some(at + n)
}

/// The secret in a header value `v[at..]` (after the colon): past any spaces and a scheme.
/// Nothing there yet: the next word is the value (or, after a scheme, the secret).
fn header_value(v: &str, at: usize) -> (Option<Range<usize>>, Option<Next>) {
    let skip_ws = |i: usize| v.len() - v[i..].trim_start().len();
    let start = skip_ws(at);
    if start == v.len() {
        return (None, Some(Next::HeaderValue));
    }
    let word_end = v[start..].find(char::is_whitespace).map_or(v.len(), |i| start + i);
    if SCHEMES.iter().any(|s| v[start..word_end].eq_ignore_ascii_case(s)) {
        let secret = skip_ws(word_end);
        if secret == v.len() {
            return (None, Some(Next::Whole));
        }
        return (Some(secret..v.len()), None);
    }
    (Some(start..v.len()), None)
}

/// URL userinfo (`scheme://user:SECRET@`, `scheme://TOKEN@`) and secret query parameters.
fn url_masks(w: &str, m: &mut Vec<Range<usize>>) {
    let ends_url = |c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '<' | '>' | '\\');
    let mut from = 0;
    while let Some(i) = w[from..].find("://") {
        let start = from + i + 3;
        let authority_end = w[start..].find(|c: char| ends_url(c) || matches!(c, '/' | '?' | '#')).map_or(w.len(), |j| start + j);
        if let Some(at) = w[start..authority_end].rfind('@') {
            let at = start + at;
            let info = &w[start..at];
            match info.find(':') {
                Some(c) if start + c + 1 < at => m.push(start + c + 1..at),
                Some(_) => {}
                None if !info.is_empty() && info != "git" => m.push(start..at),
                None => {}
            }
        }
        let url_end = w[authority_end..].find(ends_url).map_or(w.len(), |j| authority_end + j);
        if let Some(q) = w[authority_end..url_end].find('?') {
            let query_end = w[authority_end..url_end].find('#').map_or(url_end, |h| authority_end + h);
            let mut p = authority_end + q + 1;
            while p < query_end {
                let end = w[p..query_end].find('&').map_or(query_end, |j| p + j);
                if let Some(eq) = w[p..end].find('=') {
                    let name = &w[p..p + eq];
                    let secret = is_secret_name(name) || name.eq_ignore_ascii_case("sig") || name.eq_ignore_ascii_case("signature");
                    if secret && p + eq + 1 < end {
                        m.push(p + eq + 1..end);
                    }
                }
                p = end + 1;
            }
        }
        from = authority_end;
    }
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

    /// Every gap of issue 12 row 3 and its neighbours, as argv elements (`argv`: the input,
    /// then what must come out) and as shell text (`text`).
    #[test]
    fn every_secret_form_is_masked_as_argv_and_as_shell_text() {
        let argv: &[(&[&str], &[&str])] = &[
            // mysql family: attached and separate -p; --password= is a secret flag anywhere.
            (&["mysql", "-uroot", "-pSECRET", "db"], &["mysql", "-uroot", "-p<redacted>", "db"]),
            (&["mysql", "-p", "SECRET"], &["mysql", "-p", "<redacted>"]),
            (&["/usr/bin/mysqldump", "-h", "db", "-pSECRET"], &["/usr/bin/mysqldump", "-h", "db", "-p<redacted>"]),
            (&["mariadb-dump", "--password=SECRET"], &["mariadb-dump", "--password=<redacted>"]),
            // The program named by a later word: wrappers, `true mysql ...`.
            (&["env", "true", "mysql", "-pSECRET"], &["env", "true", "mysql", "-p<redacted>"]),
            (&["sudo", "-u", "bob", "mysql", "-pSECRET"], &["sudo", "-u", "bob", "mysql", "-p<redacted>"]),
            // curl -u / --user: the password part.
            (&["curl", "-u", "admin:pw", "https://h"], &["curl", "-u", "admin:<redacted>", "https://h"]),
            (&["curl", "--user", "admin:pw"], &["curl", "--user", "admin:<redacted>"]),
            (&["curl", "-uadmin:pw"], &["curl", "-uadmin:<redacted>"]),
            (&["curl", "--user=admin:pw"], &["curl", "--user=admin:<redacted>"]),
            (&["curl", "--proxy-user", "p:pw"], &["curl", "--proxy-user", "p:<redacted>"]),
            (&["curl", "-b", "sid=abc", "h"], &["curl", "-b", "<redacted>", "h"]),
            (&["curl", "--cookie", "sid=abc", "h"], &["curl", "--cookie", "<redacted>", "h"]),
            // Headers: any case, with or without a space, alone or after --header= / -H.
            (&["curl", "-H", "Authorization:Bearer x"], &["curl", "-H", "Authorization:Bearer <redacted>"]),
            (&["curl", "-H", "authorization: bearer x"], &["curl", "-H", "authorization: bearer <redacted>"]),
            (&["curl", "-H", "AUTHORIZATION: token ghp_1"], &["curl", "-H", "AUTHORIZATION: token <redacted>"]),
            (&["curl", "-H", "Authorization: abc"], &["curl", "-H", "Authorization: <redacted>"]),
            (&["curl", "-H", "Proxy-Authorization: Basic dXNlcg=="], &["curl", "-H", "Proxy-Authorization: Basic <redacted>"]),
            (&["curl", "-H", "X-Auth-Token: abc"], &["curl", "-H", "X-Auth-Token: <redacted>"]),
            (&["curl", "-H", "x-auth-token:abc"], &["curl", "-H", "x-auth-token:<redacted>"]),
            (&["curl", "-H", "X-Api-Key: k1"], &["curl", "-H", "X-Api-Key: <redacted>"]),
            (&["curl", "--header", "x-api-key:k1"], &["curl", "--header", "x-api-key:<redacted>"]),
            (&["curl", "-H", "Cookie: a=1; b=2"], &["curl", "-H", "Cookie: <redacted>"]),
            (&["curl", "-H", "Set-Cookie:sid=1"], &["curl", "-H", "Set-Cookie:<redacted>"]),
            (&["curl", "-HCookie: sid=1"], &["curl", "-HCookie: <redacted>"]),
            (&["wget", "--header=Authorization: Bearer x", "h"], &["wget", "--header=Authorization: Bearer <redacted>", "h"]),
            (&["curl", "-H", "Authorization:", "Bearer", "x"], &["curl", "-H", "Authorization:", "Bearer", "<redacted>"]),
            (&["git", "-c", "http.extraHeader=Authorization: Basic eA==", "fetch"], &["git", "-c", "http.extraHeader=Authorization: Basic <redacted>", "fetch"]),
            (&["http", "GET", "h", "Authorization:Bearer x"], &["http", "GET", "h", "Authorization:Bearer <redacted>"]),
            // URL userinfo of any scheme, with and without a colon.
            (&["git", "clone", "https://ghp_tok@github.com/o/r"], &["git", "clone", "https://<redacted>@github.com/o/r"]),
            (&["git", "clone", "https://u:pw@h/x"], &["git", "clone", "https://u:<redacted>@h/x"]),
            (&["psql", "postgres://app:pw@db:5432/x"], &["psql", "postgres://app:<redacted>@db:5432/x"]),
            (&["x", "--url=redis://:pw@cache:6379"], &["x", "--url=redis://:<redacted>@cache:6379"]),
            (&["curl", "https://h/x?access_token=abc&page=2"], &["curl", "https://h/x?access_token=<redacted>&page=2"]),
            (&["curl", "https://h/x?a=1&api_key=k#top"], &["curl", "https://h/x?a=1&api_key=<redacted>#top"]),
            // sshpass: -p of sshpass, not of the ssh it runs.
            (&["sshpass", "-p", "SECRET", "ssh", "-p", "2222", "h"], &["sshpass", "-p", "<redacted>", "ssh", "-p", "2222", "h"]),
            (&["sshpass", "-pSECRET", "ssh", "h"], &["sshpass", "-p<redacted>", "ssh", "h"]),
            // openssl: only pass: is a secret.
            (&["openssl", "rsa", "-in", "k.pem", "-passin", "pass:SECRET"], &["openssl", "rsa", "-in", "k.pem", "-passin", "pass:<redacted>"]),
            (&["openssl", "pkcs12", "-passout", "pass:SECRET"], &["openssl", "pkcs12", "-passout", "pass:<redacted>"]),
            (&["openssl", "enc", "-pass", "pass:SECRET", "-k", "K2"], &["openssl", "enc", "-pass", "pass:<redacted>", "-k", "<redacted>"]),
            // docker/podman login -p (never docker run -p).
            (&["docker", "login", "-u", "me", "-p", "SECRET", "reg"], &["docker", "login", "-u", "me", "-p", "<redacted>", "reg"]),
            (&["podman", "login", "-pSECRET", "reg"], &["podman", "login", "-p<redacted>", "reg"]),
            (&["docker", "login", "--password", "SECRET"], &["docker", "login", "--password", "<redacted>"]),
            // Other programs whose short flag is a password.
            (&["redis-cli", "-a", "SECRET", "ping"], &["redis-cli", "-a", "<redacted>", "ping"]),
            (&["ldapsearch", "-x", "-w", "SECRET"], &["ldapsearch", "-x", "-w", "<redacted>"]),
            (&["ldapsearch", "-wSECRET"], &["ldapsearch", "-w<redacted>"]),
            (&["mongosh", "-u", "x", "-p", "SECRET"], &["mongosh", "-u", "x", "-p", "<redacted>"]),
            (&["zip", "-P", "SECRET", "a.zip", "f"], &["zip", "-P", "<redacted>", "a.zip", "f"]),
            (&["7z", "x", "-pSECRET", "a.7z"], &["7z", "x", "-p<redacted>", "a.7z"]),
            (&["sqlcmd", "-S", "db", "-P", "SECRET"], &["sqlcmd", "-S", "db", "-P", "<redacted>"]),
            (&["smbclient", "//h/s", "-U", "user%SECRET"], &["smbclient", "//h/s", "-U", "user%<redacted>"]),
            // Assignments and flag names.
            (&["env", "PGPASSWORD=S", "MYSQL_PWD=S", "SSHPASS=S", "psql"], &["env", "PGPASSWORD=<redacted>", "MYSQL_PWD=<redacted>", "SSHPASS=<redacted>", "psql"]),
            (&["java", "-Ddb.password=S", "-jar", "x.jar"], &["java", "-Ddb.password=<redacted>", "-jar", "x.jar"]),
            (&["curl", "--oauth2-bearer", "S"], &["curl", "--oauth2-bearer", "<redacted>"]),
            // Shell text inside argv, nested.
            (
                &["sh", "-c", "mysql -pS1 && curl -u a:S2 https://t@h"],
                &["sh", "-c", "mysql -p<redacted> && curl -u a:<redacted> https://<redacted>@h"],
            ),
            (&["bash", "-c", "sh -c 'sshpass -p S ssh h'"], &["bash", "-c", "sh -c 'sshpass -p <redacted> ssh h'"]),
            (&["psql", "host=db password=S"], &["psql", "host=db password=<redacted>"]),
        ];
        for (input, want) in argv {
            let got = redact_argv(&v(input));
            assert_eq!(got, v(want), "redact_argv({input:?})");
            assert_eq!(redact_argv(&got), got, "redacting again changes {got:?}");
        }
        let text: &[(&str, &str)] = &[
            ("mysql -uroot -pSECRET db", "mysql -uroot -p<redacted> db"),
            ("true mysql -pSECRET1; true x", "true mysql -p<redacted>; true x"),
            ("echo hi; mysql -p\"SECRET\"", "echo hi; mysql -p\"<redacted>\""),
            ("curl -u 'admin:pw' https://h", "curl -u 'admin:<redacted>' https://h"),
            ("curl --user admin:pw h", "curl --user admin:<redacted> h"),
            ("curl -H \"Authorization:Bearer x\" h", "curl -H \"Authorization:Bearer <redacted>\" h"),
            ("curl -H 'x-auth-token: abc' h", "curl -H 'x-auth-token: <redacted>' h"),
            ("curl -H X-Api-Key:k h", "curl -H X-Api-Key:<redacted> h"),
            ("curl -H Cookie:sid=abc h", "curl -H Cookie:<redacted> h"),
            ("curl -H 'Cookie: a=1; b=2' h", "curl -H 'Cookie: <redacted>' h"),
            ("curl -H 'Set-Cookie: a=1' h", "curl -H 'Set-Cookie: <redacted>' h"),
            ("curl -H 'Proxy-Authorization: Basic eA==' h", "curl -H 'Proxy-Authorization: Basic <redacted>' h"),
            ("curl -H Authorization: Bearer abc h", "curl -H Authorization: Bearer <redacted> h"),
            ("wget --header='Authorization: Bearer x' h", "wget --header='Authorization: Bearer <redacted>' h"),
            ("git clone https://ghp_tok@github.com/o/r", "git clone https://<redacted>@github.com/o/r"),
            ("sshpass -p 'S' ssh -p 2222 h", "sshpass -p '<redacted>' ssh -p 2222 h"),
            ("openssl rsa -passin pass:S -passout env:X", "openssl rsa -passin pass:<redacted> -passout env:X"),
            ("docker login -u me -p S reg; docker run -p 8080:80 img", "docker login -u me -p <redacted> reg; docker run -p 8080:80 img"),
            ("export GITHUB_TOKEN=\"abc def\"", "export GITHUB_TOKEN=\"<redacted>\""),
            ("psql 'host=db password=S'", "psql 'host=db password=<redacted>'"),
            ("A_TOKEN='x'\"y\" run", "A_TOKEN='<redacted>'\"\" run"),
            ("redis-cli -a S|head", "redis-cli -a <redacted>|head"),
        ];
        for (input, want) in text {
            let got = redact_text(input);
            assert_eq!(got, *want, "redact_text({input:?})");
            assert_eq!(redact_text(&got), got, "redacting again changes {got:?}");
        }
    }

    #[test]
    fn non_secret_flags_and_sources_are_kept() {
        let kept: &[&[&str]] = &[
            &["ssh", "-p", "2222", "h"],
            &["python3", "-m", "http.server", "-p", "8080"],
            &["docker", "run", "-p", "8080:80", "nginx"],
            &["mkdir", "-p", "a/b"],
            &["sudo", "-p", "prompt: ", "ls"],
            &["docker", "login", "--password-stdin", "-u", "me", "reg"],
            &["gh", "auth", "login", "--with-token", "--token-file", "f"],
            &["openssl", "rsa", "-passin", "env:PW", "-passout", "file:/p"],
            &["openssl", "rsa", "-passin", "fd:3", "-passout", "stdin"],
            &["git", "clone", "ssh://git@github.com/o/r"],
            &["curl", "-u", "admin", "h"],
            &["curl", "-b", "cookies.txt", "h"],
            &["curl", "-H", "Content-Type: application/json", "h"],
            &["7z", "a", "-p", "a.7z"],
            &["grep", "-rn", "key", "."],
            &["make", "-j4", "CC=gcc"],
            &["python3", "-c", "print('hello world')"],
            &["sh", "-c", "ls -la | grep -v x && echo 'a b'"],
            &["tar", "-czf", "x.tgz", "dir"],
            &["ssh", "mysql-host", "-p", "2222"],
            &["cat", "/etc/mysql.conf", "-p"],
        ];
        for a in kept {
            assert_eq!(redact_argv(&v(a)), v(a), "{a:?}");
        }
        assert_eq!(redact_text("ssh -p 2222 host; mkdir -p x"), "ssh -p 2222 host; mkdir -p x");
        assert_eq!(redact_text("echo it's fine"), "echo it's fine");
        assert_eq!(redact_text("\u{8e3}\u{10808}"), "\u{8e3}\u{10808}", "multi-byte text where `bearer` would be");
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any text, however it is quoted, is redacted without a panic, and what comes out is
        /// kept as it is when redacted again.
        #[test]
        fn never_panics(s in "[ a-zA-Z0-9:=@/;&|()'\"\\\\%-]{0,60}|\\PC{0,40}", argv in proptest::collection::vec("[ a-zA-Z:=@'\"-]{0,12}", 0..6)) {
            let once = redact_text(&s);
            let _ = redact_argv(&argv);
            prop_assert_eq!(redact_text(&once), once.clone());
        }
    }
}
