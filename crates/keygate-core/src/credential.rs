//! Finding the key a request presents, for the schemes its route accepts.
//!
//! Only the configured headers count: a key in the query string, a cookie or any other header
//! authenticates nothing. A value not of its scheme's shape is refused here, before any lookup.

use super::request::{HeaderValue, Headers};
use super::scheme::Scheme;

/// A key found in a request, shaped like its scheme's keys.
#[derive(Clone, Copy)]
pub struct Presented<'a> {
    /// Index of the scheme in the config.
    pub scheme: usize,
    /// The whole key, prefix included.
    pub key: &'a [u8],
    /// The public id (Argon2 schemes); empty for sha256 schemes.
    pub id: &'a [u8],
    /// It came as `Authorization: Bearer`.
    pub bearer: bool,
}

impl std::fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presented")
            .field("scheme", &self.scheme)
            .field("key", &"<redacted>")
            .field("bearer", &self.bearer)
            .finish()
    }
}

/// Why no usable credential was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// None of the accepted schemes' headers is present.
    Missing,
    /// A credential header is present but unusable: wrong shape, unknown prefix, sent twice,
    /// an empty Bearer, or two credential headers at once.
    Malformed { bearer: bool },
}

/// Longest accepted value of a credential header; anything longer is malformed without a scan.
const MAX_VALUE: usize = 1024;

/// Every scheme's credential header, once: what a data plane removes before the upstream
/// sees the request.
pub fn headers(schemes: &[Scheme]) -> impl Iterator<Item = &str> {
    schemes.iter().enumerate().filter_map(|(i, sc)| {
        let first = !schemes[..i].iter().any(|o| o.header == sc.header);
        first.then_some(sc.header.as_str())
    })
}

/// Finds the one credential among `accepted` schemes (indices into `schemes`).
pub fn extract<'a, H: Headers + ?Sized>(
    schemes: &[Scheme],
    accepted: &[usize],
    headers: &'a H,
) -> Result<Presented<'a>, CredentialError> {
    let mut found: Option<Result<Presented<'a>, CredentialError>> = None;
    for (pos, &si) in accepted.iter().enumerate() {
        let header = schemes[si].header.as_str();
        // Each header is read once even when several schemes share it.
        if accepted[..pos].iter().any(|&p| schemes[p].header == header) {
            continue;
        }
        let bearer = schemes[si].bearer;
        let value = match headers.get(header) {
            HeaderValue::Absent => continue,
            HeaderValue::Many => return Err(CredentialError::Malformed { bearer }),
            HeaderValue::One(v) => v,
        };
        if found.is_some() {
            // Two credential headers at once: ambiguous, so neither counts.
            return Err(CredentialError::Malformed { bearer: true });
        }
        found = Some(parse_value(schemes, accepted, header, bearer, value));
    }
    found.unwrap_or(Err(CredentialError::Missing))
}

fn parse_value<'a>(
    schemes: &[Scheme],
    accepted: &[usize],
    header: &str,
    bearer: bool,
    value: &'a [u8],
) -> Result<Presented<'a>, CredentialError> {
    let bad = CredentialError::Malformed { bearer };
    if value.len() > MAX_VALUE {
        return Err(bad);
    }
    let value = value.trim_ascii();
    let key = if bearer {
        let (word, rest) = value.split_at_checked(6).ok_or(bad)?;
        if !word.eq_ignore_ascii_case(b"bearer") || rest.first().is_none_or(|b| *b != b' ') {
            return Err(bad);
        }
        rest.trim_ascii_start()
    } else {
        value
    };
    if key.is_empty() {
        return Err(bad);
    }
    for &si in accepted {
        let s = &schemes[si];
        if s.header == header && key.starts_with(s.key_prefix.as_bytes()) {
            let id = s.shape(key).ok_or(bad)?;
            return Ok(Presented {
                scheme: si,
                key,
                id,
                bearer,
            });
        }
    }
    Err(bad)
}

#[cfg(test)]
mod tests {
    use super::super::scheme::{HashKind, ID_LEN, SECRET_LEN};
    use super::*;

    fn schemes() -> Vec<Scheme> {
        vec![
            Scheme::new(
                "toon".into(),
                "x-api-key".into(),
                "toon_".into(),
                HashKind::Argon2id {
                    memory_kib: 8,
                    iterations: 1,
                    parallelism: 1,
                },
                16,
                128,
            ),
            Scheme::new(
                "live".into(),
                "authorization".into(),
                "tk_live_".into(),
                HashKind::Sha256,
                16,
                128,
            ),
        ]
    }

    fn argon_key() -> String {
        format!("toon_{}_{}", "A".repeat(ID_LEN), "b".repeat(SECRET_LEN))
    }
    const LIVE: &str = "tk_live_abcdefghijklmnop_qrstuvwxyz012345";

    fn run(h: &[(&str, &str)]) -> Result<(usize, Vec<u8>), CredentialError> {
        let s = schemes();
        extract(&s, &[0, 1], h).map(|p| (p.scheme, p.key.to_vec()))
    }

    fn malformed(bearer: bool) -> Result<(usize, Vec<u8>), CredentialError> {
        Err(CredentialError::Malformed { bearer })
    }

    #[test]
    fn finds_each_scheme() {
        let k = argon_key();
        assert_eq!(run(&[("x-api-key", &k)]), Ok((0, k.clone().into_bytes())));
        let s = schemes();
        let h: &[(&str, &str)] = &[("x-api-key", &k)];
        assert_eq!(
            extract(&s, &[0], h).unwrap().id,
            "A".repeat(ID_LEN).as_bytes()
        );
        let auth = format!("Bearer {LIVE}");
        assert_eq!(
            run(&[("authorization", &auth)]),
            Ok((1, LIVE.as_bytes().to_vec()))
        );
    }

    #[test]
    fn bearer_word_is_case_insensitive_and_spacing_is_tolerated() {
        for v in [
            format!("bearer {LIVE}"),
            format!("BEARER {LIVE}"),
            format!("BeArEr   {LIVE}  "),
            format!("  Bearer {LIVE}"),
        ] {
            assert_eq!(run(&[("authorization", &v)]).unwrap().0, 1, "{v}");
        }
    }

    #[test]
    fn bad_bearer_values() {
        for v in [
            "Bearer".to_string(),
            "Bearer ".to_string(),
            "Bearer    ".to_string(),
            format!("Bearer{LIVE}"),
            format!("Basic {LIVE}"),
            format!("Token {LIVE}"),
            format!("Bearer {LIVE} extra"),
            format!("Bearer {LIVE},Bearer {LIVE}"),
            LIVE.to_string(),
        ] {
            assert_eq!(run(&[("authorization", &v)]), malformed(true), "{v}");
        }
    }

    #[test]
    fn shape_is_checked() {
        let id = "A".repeat(ID_LEN);
        let sec = "b".repeat(SECRET_LEN);
        for v in [
            format!("tooX_{id}_{sec}"),                          // wrong prefix
            format!("toon_{id}_{}", "b".repeat(SECRET_LEN - 1)), // short
            format!("toon_{id}_{sec}b"),                         // long
            format!("toon_{id}-{sec}"),                          // separator
            format!("toon_{}!_{sec}", &id[1..]),                 // alphabet
            format!("toon_{id}_{}é", &sec[2..]),                 // non-ASCII
            "x".repeat(5000),                                    // huge
        ] {
            assert_eq!(run(&[("x-api-key", &v)]), malformed(false), "{v}");
        }
        let short = "Bearer tk_live_short".to_string();
        assert_eq!(run(&[("authorization", &short)]), malformed(true));
    }

    #[test]
    fn missing_duplicate_and_both() {
        assert_eq!(run(&[]), Err(CredentialError::Missing));
        assert_eq!(
            run(&[("cookie", LIVE), ("x-other", LIVE)]),
            Err(CredentialError::Missing)
        );
        let k = argon_key();
        assert_eq!(
            run(&[("x-api-key", &k), ("x-api-key", &k)]),
            malformed(false)
        );
        let auth = format!("Bearer {LIVE}");
        assert_eq!(
            run(&[("x-api-key", &k), ("authorization", &auth)]),
            malformed(true)
        );
        // Not accepted by the route: as if absent.
        let s = schemes();
        let h: &[(&str, &str)] = &[("x-api-key", &k)];
        assert_eq!(extract(&s, &[1], h).unwrap_err(), CredentialError::Missing);
        // Empty value.
        assert_eq!(run(&[("x-api-key", "")]), malformed(false));
    }
}
