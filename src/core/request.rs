//! The transport-neutral request every frontend builds, and the header lookup it reads.

use std::borrow::Cow;

/// What a header lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderValue<'a> {
    Absent,
    One(&'a [u8]),
    /// The header was sent more than once.
    Many,
}

/// Header access by lowercase name. Frontends implement it over their wire maps so the core
/// never copies headers.
pub trait Headers {
    fn get(&self, lowercase_name: &str) -> HeaderValue<'_>;
}

impl Headers for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> HeaderValue<'_> {
        // Envoy lowercases names and joins repeated headers with commas, which the
        // credential parser then refuses (a comma is outside every key alphabet).
        match std::collections::HashMap::get(self, name) {
            Some(v) => HeaderValue::One(v.as_bytes()),
            None => HeaderValue::Absent,
        }
    }
}

impl Headers for http::HeaderMap {
    fn get(&self, name: &str) -> HeaderValue<'_> {
        let mut it = self.get_all(name).iter();
        match (it.next(), it.next()) {
            (None, _) => HeaderValue::Absent,
            (Some(v), None) => HeaderValue::One(v.as_bytes()),
            (Some(_), Some(_)) => HeaderValue::Many,
        }
    }
}

impl Headers for [(&str, &str)] {
    fn get(&self, name: &str) -> HeaderValue<'_> {
        let mut found = HeaderValue::Absent;
        for (k, v) in self {
            if k.eq_ignore_ascii_case(name) {
                if found != HeaderValue::Absent {
                    return HeaderValue::Many;
                }
                found = HeaderValue::One(v.as_bytes());
            }
        }
        found
    }
}

/// One request to authorize, as the frontends see it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a, H: ?Sized> {
    pub method: &'a str,
    /// The original path, possibly with a query string or in absolute form.
    pub path: &'a str,
    pub host: Option<&'a str>,
    pub headers: &'a H,
}

/// Reduces a request target to the normalized path that route matching sees: the query is
/// dropped, an absolute-form URI loses its scheme and authority, percent-encoded unreserved
/// characters are decoded, `%2F`, `%5C` and `\` become `/`, repeated slashes collapse, and
/// `.`/`..` segments are resolved.
///
/// Upstreams commonly normalize this way, so matching the raw string would let
/// `/v1/%74okens`, `/v1%2Ftokens` or `/v1/./tokens` slip past a scoped route into a
/// catch-all. Reading an encoded slash as a slash is the strict choice: an upstream that keeps
/// it encoded sees a path the decoded one only narrows.
/// Returns `None` for a target that is not a path (no leading `/`, control bytes, bad escapes).
pub fn normalize_path(target: &str) -> Option<Cow<'_, str>> {
    let mut t = target;
    for scheme in ["http://", "https://"] {
        // Compare bytes: slicing the str at a byte count could split a character.
        if t.as_bytes()
            .get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme.as_bytes()))
        {
            let rest = &t[scheme.len()..];
            t = rest.find('/').map_or("/", |i| &rest[i..]);
            break;
        }
    }
    let end = t.find(['?', '#']).unwrap_or(t.len());
    let p = &t[..end];
    if !p.starts_with('/') || p.bytes().any(|b| b < 0x21 || b == 0x7f) {
        return None;
    }
    let simple = !p.contains(['%', '\\']) && !p.contains("//") && !p.contains("/.");
    if simple {
        return Some(Cow::Borrowed(p));
    }
    let decoded = decode_unreserved(p)?.replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/').skip(1) {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || decoded.ends_with('/') && !out.ends_with('/') {
        out.push('/');
    }
    Some(Cow::Owned(out))
}

/// The byte of the `%XY` escape starting at `b[i]`; `None` if it is cut short or not hex.
pub fn escaped_byte(b: &[u8], i: usize) -> Option<u8> {
    let hex = |c: u8| (c as char).to_digit(16);
    let (h, l) = (hex(*b.get(i + 1)?)?, hex(*b.get(i + 2)?)?);
    Some((h * 16 + l) as u8)
}

fn decode_unreserved(p: &str) -> Option<String> {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let c = escaped_byte(b, i)?;
            if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                out.push(c);
            } else if c == b'/' || c == b'\\' {
                out.push(b'/');
            } else {
                out.extend_from_slice(&[
                    b'%',
                    b[i + 1].to_ascii_uppercase(),
                    b[i + 2].to_ascii_uppercase(),
                ]);
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    // Only ASCII was decoded, so the result is as valid UTF-8 as the input.
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_paths() {
        let n = |s| normalize_path(s).map(|c| c.into_owned());
        assert_eq!(n("/v1/tokens?x=1").as_deref(), Some("/v1/tokens"));
        assert_eq!(n("/v1/%74okens").as_deref(), Some("/v1/tokens"));
        assert_eq!(n("/v1/./tokens").as_deref(), Some("/v1/tokens"));
        assert_eq!(n("/v2/../v1/tokens/").as_deref(), Some("/v1/tokens/"));
        assert_eq!(n("//v1//tokens").as_deref(), Some("/v1/tokens"));
        assert_eq!(n("/../..").as_deref(), Some("/"));
        assert_eq!(n("/a%3Fb").as_deref(), Some("/a%3Fb"));
        assert_eq!(n("/v1%2Ftokens").as_deref(), Some("/v1/tokens"));
        assert_eq!(n("/v1%2ftokens%2F7").as_deref(), Some("/v1/tokens/7"));
        assert_eq!(n("/v1%5Ctokens").as_deref(), Some("/v1/tokens"));
        assert_eq!(n("/v1\\tokens").as_deref(), Some("/v1/tokens"));
        assert_eq!(n("/public%2F..%2Fadmin").as_deref(), Some("/admin"));
        assert_eq!(n("http://h.example/v1/x").as_deref(), Some("/v1/x"));
        assert_eq!(n("HTTPS://h.example").as_deref(), Some("/"));
        assert_eq!(n("v1/tokens"), None);
        assert_eq!(n(""), None);
        assert_eq!(n("/a\0b"), None);
        assert_eq!(n("/a b"), None);
        assert_eq!(n("/a%zz"), None);
        assert_eq!(n("/a%4"), None);
        // Multi-byte characters where a scheme or an escape is looked for do not panic.
        assert_eq!(n("http:/é").as_deref(), None);
        assert_eq!(n("httpé//x"), None);
        assert_eq!(n("/é/%74x").as_deref(), Some("/é/tx"));
    }

    #[test]
    fn header_slices_report_duplicates() {
        let h: &[(&str, &str)] = &[("X-Api-Key", "a"), ("x-api-key", "b")];
        assert_eq!(Headers::get(h, "x-api-key"), HeaderValue::Many);
        assert_eq!(Headers::get(h, "host"), HeaderValue::Absent);
        let mut m = http::HeaderMap::new();
        m.append("x-api-key", "a".parse().unwrap());
        assert_eq!(Headers::get(&m, "x-api-key"), HeaderValue::One(b"a"));
        m.append("x-api-key", "b".parse().unwrap());
        assert_eq!(Headers::get(&m, "x-api-key"), HeaderValue::Many);
    }
}
