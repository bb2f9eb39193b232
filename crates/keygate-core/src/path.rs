//! Request paths as upstreams read them.
//!
//! An authorization layer is bypassed where it and the upstream read one request target
//! differently: `/v1/account/usage/..;/..;/tokens` is `/v1/tokens` to Tomcat, Jetty and Spring
//! (they strip `;parameters` from each segment before resolving dot segments) and a path under
//! `/v1/account/usage` to a server that does not; `/v1/tokens/%2e%2e/x` is `/v1/x` to a server
//! that decodes before it resolves dots and a path under `/v1/tokens` to one that resolves first.
//!
//! keygate therefore reads a path every way a common upstream might, and a request is allowed
//! only if it is allowed under each reading. A [`Target`] holds the validated path; its
//! [`Target::path`] is the lenient reading the SPEC fixes (parameters stripped, `%2F`, `%5C`
//! and `\` read as `/`, `%2E` as `.`, empty segments merged, dot segments resolved), and
//! [`Target::readings`] yields the others — each subset of those steps that the path gives a
//! chance to matter, and decoding twice where an escape hides another. Plain paths (no `%`,
//! `\`, `;`, `//` or `/.`) have one reading and cost one pass over their bytes.
//!
//! Refused outright as [`PathError::Malformed`] (400 `bad_path`): control bytes, a NUL in any
//! form, an escape that is cut short or not hex, an escape left after one decoding that stands
//! for NUL, `%`, `.`, `/` or `\` (the double encodings `%2500`, `%2525`, `%252e`, `%252f`,
//! `%255c`, also with their digits encoded, as in `%25%32%65`), escapes whose bytes are not
//! UTF-8 after one decoding or two (so every overlong form, such as `%c0%ae` for `.` or
//! `%c0%af` for `/`), and a path that can be read more than one way when it is longer than
//! [`MAX_AMBIGUOUS_LEN`].

use std::borrow::Cow;

/// Why a request target is not routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not a path (`*`, empty, relative): no route matches it.
    NotAPath,
    /// A path no request may carry: answered 400 `bad_path`.
    Malformed,
}

/// Ambiguous paths (more than one reading) longer than this are refused: each reading costs a
/// pass over the path, and nginx's default request line buffer is 8 KiB anyway.
pub const MAX_AMBIGUOUS_LEN: usize = 4096;

// Steps of a reading.
/// `;parameters` are stripped from each segment.
const PARAMS: u16 = 1;
// The lenient reading takes every step but `TWICE`, `ENCODED_SEMICOLON` and `ENCODED_QUERY`.
/// `\` separates segments.
const BACKSLASH: u16 = 2;
/// `%2F` and `%5C` separate segments.
const ENCODED_SLASH: u16 = 4;
/// `%2E` is a `.` when dot segments are resolved.
const ENCODED_DOT: u16 = 8;
/// Empty segments are dropped.
const MERGE: u16 = 16;
/// The path is decoded once first (an upstream that decodes twice).
const TWICE: u16 = 32;
/// `%3B` begins parameters too (an upstream that decodes before it strips them).
const ENCODED_SEMICOLON: u16 = 64;
/// `%3F` and `%23` end the path (an upstream behind a hop that forwards the path decoded).
const ENCODED_QUERY: u16 = 128;
const LENIENT: u16 = PARAMS | BACKSLASH | ENCODED_SLASH | ENCODED_DOT | MERGE;

/// A validated request path.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The path part: absolute form stripped, query and fragment cut.
    raw: &'a str,
    /// The steps this path gives a chance to matter.
    steps: u16,
    /// Letters a case-insensitive router would read differently.
    upper: bool,
}

impl<'a> Target<'a> {
    /// Validates a request target (origin or absolute form, with or without a query).
    pub fn parse(target: &'a str) -> Result<Target<'a>, PathError> {
        let raw = path_part(target);
        if !raw.starts_with('/') {
            return Err(if raw.bytes().any(is_control) {
                PathError::Malformed
            } else {
                PathError::NotAPath
            });
        }
        let b = raw.as_bytes();
        let (mut steps, mut upper, mut percent) = (0u16, false, false);
        for (i, &c) in b.iter().enumerate() {
            match c {
                c if is_control(c) => return Err(PathError::Malformed),
                b'%' => percent = true,
                b'\\' => steps |= BACKSLASH | MERGE,
                b';' => steps |= PARAMS | MERGE,
                b'/' if b.get(i + 1) == Some(&b'/') => steps |= MERGE,
                // `/.` may begin a dot segment; the lenient reading resolves it, every reading
                // does the same, so it adds no step, only the slow path.
                b'/' if b.get(i + 1) == Some(&b'.') => steps |= SLOW,
                c if c.is_ascii_uppercase() => upper = true,
                _ => {}
            }
        }
        if percent {
            steps |= SLOW | check_escapes(raw)?;
            upper = true;
        }
        if steps & !SLOW != 0 && raw.len() > MAX_AMBIGUOUS_LEN {
            return Err(PathError::Malformed);
        }
        Ok(Target { raw, steps, upper })
    }

    /// The lenient reading, which route matching starts from.
    pub fn path(&self) -> Cow<'a, str> {
        if self.steps == 0 {
            return Cow::Borrowed(self.raw);
        }
        let mut out = String::with_capacity(self.raw.len());
        read(self.raw, LENIENT, &mut out);
        Cow::Owned(out)
    }

    /// Every other reading of the path, each once, none equal to [`Target::path`].
    pub fn readings(&self) -> Vec<String> {
        let present = self.steps & !SLOW;
        if present == 0 {
            return Vec::new();
        }
        let lenient = self.path();
        let mut out: Vec<String> = Vec::new();
        // Every subset of the present steps, with the absent ones as the lenient reading has
        // them (an absent step changes nothing either way).
        let mut subset = present;
        loop {
            let steps = subset | (LENIENT & !present);
            if steps != LENIENT {
                let mut s = String::with_capacity(self.raw.len());
                let mut src = if steps & TWICE != 0 {
                    Cow::Owned(twice(self.raw))
                } else {
                    Cow::Borrowed(self.raw)
                };
                if steps & ENCODED_QUERY != 0 {
                    let end = encoded_query(&src);
                    if end < src.len() {
                        src = Cow::Owned(src[..end].to_string());
                    }
                }
                read(&src, steps, &mut s);
                if s != *lenient && !out.contains(&s) {
                    out.push(s);
                }
            }
            if subset == 0 {
                break;
            }
            subset = (subset - 1) & present;
        }
        out
    }

    /// Whether a router that ignores ASCII case could read this path differently.
    pub fn has_upper(&self) -> bool {
        self.upper
    }
}

/// Not a step: the path needs the slow reading (escapes or dot segments) but reads one way.
const SLOW: u16 = 1 << 15;

/// The lenient reading of `target`, as route matching sees it.
pub fn normalize_path(target: &str) -> Result<Cow<'_, str>, PathError> {
    Target::parse(target).map(|t| t.path())
}

fn is_control(c: u8) -> bool {
    c < 0x21 || c == 0x7f
}

/// The path of an origin-form or absolute-form target, without query or fragment.
fn path_part(target: &str) -> &str {
    let mut t = target;
    for scheme in ["http://", "https://"] {
        // Compare bytes: slicing the str at a byte count could split a character.
        if t.as_bytes()
            .get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme.as_bytes()))
        {
            let rest = &t[scheme.len()..];
            t = match rest.find(['/', '?', '#']) {
                Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
                _ => "/",
            };
            break;
        }
    }
    &t[..t.find(['?', '#']).unwrap_or(t.len())]
}

/// The byte of the `%XY` escape starting at `b[i]`; `None` if it is cut short or not hex.
pub fn escaped_byte(b: &[u8], i: usize) -> Option<u8> {
    let hex = |c: u8| (c as char).to_digit(16);
    let (h, l) = (hex(*b.get(i + 1)?)?, hex(*b.get(i + 2)?)?);
    Some((h * 16 + l) as u8)
}

/// Checks every escape of `raw`; returns the steps its escapes bring.
fn check_escapes(raw: &str) -> Result<u16, PathError> {
    let b = raw.as_bytes();
    let mut steps = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        match escaped_byte(b, i).ok_or(PathError::Malformed)? {
            0 => return Err(PathError::Malformed),
            b'/' | b'\\' => steps |= ENCODED_SLASH | MERGE,
            b'.' => steps |= ENCODED_DOT,
            b';' => steps |= ENCODED_SEMICOLON | MERGE,
            b'?' | b'#' => steps |= ENCODED_QUERY,
            _ => {}
        }
        i += 3;
    }
    // What one decoding leaves: an escape there is an encoded `%` (`%25` followed by two hex
    // digits, themselves encoded or not), which a server that decodes twice decodes again.
    let once = String::from_utf8(decode_once(b)).map_err(|_| PathError::Malformed)?;
    let o = once.as_bytes();
    let mut hidden = false;
    for j in 0..o.len() {
        if o[j] == b'%'
            && let Some(c) = escaped_byte(o, j)
        {
            match c {
                0 | b'%' | b'.' | b'/' | b'\\' => return Err(PathError::Malformed),
                b';' => steps |= ENCODED_SEMICOLON | MERGE,
                b'?' | b'#' => steps |= ENCODED_QUERY,
                _ => {}
            }
            hidden = true;
        }
    }
    if hidden {
        std::str::from_utf8(&decode_once(o)).map_err(|_| PathError::Malformed)?;
        steps |= TWICE;
    }
    Ok(steps)
}

/// `b` with every valid escape decoded; a `%` that does not begin one stays.
fn decode_once(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], escaped_byte(b, i)) {
            (b'%', Some(c)) => {
                out.push(c);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The path a server that decodes twice reads: `raw` decoded once (as UTF-8, which
/// [`check_escapes`] ensured), up to a `?` or `#` that the decoding revealed.
fn twice(raw: &str) -> String {
    let once = String::from_utf8_lossy(&decode_once(raw.as_bytes())).into_owned();
    let end = once.find(['?', '#']).unwrap_or(once.len());
    once[..end].to_string()
}

/// Where the first escape of `?` or `#` in `p` begins (`p.len()` if none).
fn encoded_query(p: &str) -> usize {
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match (b[i], escaped_byte(b, i)) {
            (b'%', Some(b'?' | b'#')) => return i,
            (b'%', Some(_)) => i += 3,
            _ => i += 1,
        }
    }
    b.len()
}

fn utf8_len(first: u8) -> usize {
    match first {
        0..0x80 => 1,
        0xe0..0xf0 => 3,
        0xf0.. => 4,
        _ => 2,
    }
}

fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~".contains(&c)
}

/// Reads `raw` (a validated path) with `steps` into `out`.
fn read(raw: &str, steps: u16, out: &mut String) {
    out.clear();
    let b = raw.as_bytes();
    // Where each segment pushed onto `out` starts (its `/`), for `..`.
    let mut starts: Vec<usize> = Vec::new();
    let mut seg = String::new();
    let mut in_params = false;
    let mut i = 1; // past the leading '/'
    let mut ended_with_separator = false;
    loop {
        let (sep, next) = if i >= b.len() {
            (true, i)
        } else {
            match b[i] {
                b'/' => (true, i + 1),
                b'\\' if steps & BACKSLASH != 0 => (true, i + 1),
                // Escapes were validated; a bad one would be read as a plain `%`.
                b'%' if escaped_byte(b, i).is_some() => {
                    let c = escaped_byte(b, i).unwrap_or(b'%');
                    if steps & ENCODED_SLASH != 0 && (c == b'/' || c == b'\\') {
                        (true, i + 3)
                    } else if steps & ENCODED_SEMICOLON != 0 && c == b';' {
                        in_params = true;
                        (false, i + 3)
                    } else {
                        if !in_params {
                            if c == b'.' && steps & ENCODED_DOT == 0 {
                                seg.push_str("%2E");
                            } else if unreserved(c) {
                                seg.push(c as char);
                            } else {
                                seg.push('%');
                                seg.push_str(&raw[i + 1..i + 3].to_ascii_uppercase());
                            }
                        }
                        (false, i + 3)
                    }
                }
                b';' if steps & PARAMS != 0 => {
                    in_params = true;
                    (false, i + 1)
                }
                c => {
                    let n = utf8_len(c);
                    if !in_params {
                        seg.push_str(&raw[i..i + n]);
                    }
                    (false, i + n)
                }
            }
        };
        if sep {
            let last = i >= b.len();
            match seg.as_str() {
                "." => {}
                ".." => {
                    if let Some(s) = starts.pop() {
                        out.truncate(s);
                    }
                }
                "" if last || steps & MERGE != 0 => {}
                s => {
                    starts.push(out.len());
                    out.push('/');
                    out.push_str(s);
                }
            }
            seg.clear();
            in_params = false;
            if last {
                break;
            }
            ended_with_separator = next >= b.len();
        }
        i = next;
    }
    if out.is_empty() || ended_with_separator && !out.ends_with('/') {
        out.push('/');
    }
}

#[cfg(test)]
mod tests;
