//! The transport-neutral request every frontend builds, and the header lookup it reads.

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

    /// Whether the request carries a header that only keygate may set (under the metadata
    /// prefix) and that this data plane cannot remove before the upstream sees it: such a
    /// request is refused, once its caller is known. Data planes that remove them say `false`.
    fn carries_reserved(&self) -> bool {
        false
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_slices_report_duplicates() {
        let h: &[(&str, &str)] = &[("X-Api-Key", "a"), ("x-api-key", "b")];
        assert_eq!(Headers::get(h, "x-api-key"), HeaderValue::Many);
        assert_eq!(Headers::get(h, "host"), HeaderValue::Absent);
    }
}
