//! `schemes`: how keys are presented (header, prefix) and stored (Argon2id or SHA-256).

use std::collections::HashSet;

use keygate_core::scheme::{Alphabet, HashKind, KeyFormat, Scheme};
use serde::Deserialize;

use super::Problems;

/// One `schemes[]` entry as written.
#[derive(Debug, Deserialize)]
pub struct RawScheme {
    /// Unique name, used by routes and when creating keys.
    pub name: String,
    /// `x-api-key`, `authorization` (Bearer), or another header name.
    pub header: String,
    /// 1–32 of `A-Za-z0-9_-`; keys of different schemes on one header must not share a prefix.
    pub key_prefix: String,
    /// `argon2id` or `sha256`.
    pub hash: String,
    /// Argon2id parameters for new keys (verification reads them from each stored hash).
    #[serde(default)]
    pub argon2: Option<RawArgon2>,
    /// sha256 only: shortest accepted part after the prefix, for imported keys.
    #[serde(default)]
    pub min_length: Option<usize>,
    /// sha256 only: longest accepted part after the prefix.
    #[serde(default)]
    pub max_length: Option<usize>,
    /// The shape of generated keys, which presented keys must then have exactly; without it,
    /// `<prefix><id>_<32 base62>`, and a sha256 scheme accepts any key within its lengths.
    #[serde(default)]
    pub format: Option<RawFormat>,
    /// `crc32`: keys end with six base62 characters of the CRC-32 of the rest, checked
    /// before any lookup.
    #[serde(default)]
    pub checksum: Option<String>,
}

/// `schemes[].format` as written.
#[derive(Debug, Deserialize, Clone)]
#[serde(default)]
pub struct RawFormat {
    /// Keys carry a public id (`<prefix><id>_<secret>`); `false` only for sha256 schemes.
    pub id: bool,
    /// `base62` or `hex` (lowercase).
    pub alphabet: String,
    /// Characters of the secret: at least 128 bits' worth (22 base62, 32 hex), at most 128.
    pub length: usize,
}

impl Default for RawFormat {
    fn default() -> Self {
        RawFormat {
            id: true,
            alphabet: "base62".into(),
            length: keygate_core::scheme::SECRET_LEN,
        }
    }
}

/// `schemes[].argon2` as written.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(default)]
pub struct RawArgon2 {
    /// Memory per hash in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for RawArgon2 {
    /// OWASP's recommendation for Argon2id, which the argon2 crate also defaults to.
    fn default() -> Self {
        RawArgon2 {
            memory_kib: 19456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// A valid HTTP header name (RFC 9110 token), lowercased; a bad one is reported as `field`.
pub(crate) fn header_name(field: &str, v: &str, p: &mut Problems) -> String {
    let ok = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !ok {
        p.push(field, format!("`{v}` is not a valid header name"));
    }
    v.to_ascii_lowercase()
}

pub fn compile(raw: &[RawScheme], p: &mut Problems) -> Vec<Scheme> {
    if raw.is_empty() {
        p.push("schemes", "at least one scheme is required");
    }
    if raw.len() > 64 {
        p.push("schemes", "at most 64 schemes");
    }
    let mut names = HashSet::new();
    let mut prefixes: Vec<(String, String)> = Vec::new();
    let mut schemes = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let f = |n: &str| format!("schemes[{i}].{n}");
        if s.name.is_empty() {
            p.push(f("name"), "must not be empty");
        } else if !names.insert(s.name.clone()) {
            p.push(f("name"), format!("duplicate scheme name `{}`", s.name));
        }
        let header = header_name(&f("header"), &s.header, p);
        if s.key_prefix.is_empty()
            || s.key_prefix.len() > 32
            || !s
                .key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            p.push(
                f("key_prefix"),
                "must be 1 to 32 characters of A-Z, a-z, 0-9, _ and -",
            );
        }
        for (other_header, other_prefix) in &prefixes {
            if *other_header == header
                && (other_prefix.starts_with(&s.key_prefix)
                    || s.key_prefix.starts_with(other_prefix.as_str()))
            {
                p.push(
                    f("key_prefix"),
                    format!(
                        "`{}` overlaps `{other_prefix}` on the same header",
                        s.key_prefix
                    ),
                );
            }
        }
        prefixes.push((header.clone(), s.key_prefix.clone()));
        let hash = hash_kind(s, &f, p);
        let (min, max) = lengths(s, &hash, &f, p);
        let mut scheme = Scheme::new(s.name.clone(), header, s.key_prefix.clone(), hash, min, max);
        if let Some(raw) = &s.format {
            scheme = scheme.with_format(format(raw, s, &hash, &f, p));
        }
        match s.checksum.as_deref() {
            None => {}
            Some("crc32") => scheme = scheme.with_checksum(),
            Some(other) => p.push(
                f("checksum"),
                format!("unknown checksum `{other}` (expected crc32)"),
            ),
        }
        schemes.push(scheme);
    }
    schemes
}

fn format(
    raw: &RawFormat,
    s: &RawScheme,
    hash: &HashKind,
    f: &dyn Fn(&str) -> String,
    p: &mut Problems,
) -> KeyFormat {
    let alphabet = match raw.alphabet.as_str() {
        "base62" => Alphabet::Base62,
        "hex" => Alphabet::Hex,
        other => {
            p.push(
                f("format.alphabet"),
                format!("unknown alphabet `{other}` (expected base62 or hex)"),
            );
            Alphabet::Base62
        }
    };
    if !raw.id && matches!(hash, HashKind::Argon2id { .. }) {
        p.push(
            f("format.id"),
            "argon2id keys carry their id: only sha256 schemes may leave it out",
        );
    }
    if (raw.length as f64) * alphabet.bits() < 128.0 || raw.length > 128 {
        p.push(
            f("format.length"),
            "the secret needs at least 128 bits (22 base62 or 32 hex characters) and at most 128 characters",
        );
    }
    if s.min_length.is_some() || s.max_length.is_some() {
        p.push(
            f("format"),
            "a format fixes the shape: leave out min_length and max_length",
        );
    }
    KeyFormat {
        id: raw.id,
        alphabet,
        length: raw.length,
    }
}

fn hash_kind(s: &RawScheme, f: &dyn Fn(&str) -> String, p: &mut Problems) -> HashKind {
    match s.hash.as_str() {
        "argon2id" => {
            let a = s.argon2.unwrap_or_default();
            if argon2::Params::new(a.memory_kib, a.iterations, a.parallelism, None).is_err() {
                p.push(f("argon2"), "parameters out of Argon2's range");
            }
            HashKind::Argon2id {
                memory_kib: a.memory_kib,
                iterations: a.iterations,
                parallelism: a.parallelism,
            }
        }
        "sha256" => {
            if s.argon2.is_some() {
                p.push(f("argon2"), "only used with hash: argon2id");
            }
            HashKind::Sha256
        }
        other => {
            p.push(
                f("hash"),
                format!("unknown hash `{other}` (expected argon2id or sha256)"),
            );
            HashKind::Sha256
        }
    }
}

fn lengths(
    s: &RawScheme,
    hash: &HashKind,
    f: &dyn Fn(&str) -> String,
    p: &mut Problems,
) -> (usize, usize) {
    let min = s.min_length.unwrap_or(16);
    let max = s.max_length.unwrap_or(128);
    if matches!(hash, HashKind::Argon2id { .. })
        && (s.min_length.is_some() || s.max_length.is_some())
    {
        p.push(
            f("min_length"),
            "argon2id keys have a fixed shape; lengths apply to sha256 only",
        );
    }
    if min == 0 || min > max || max > 512 {
        p.push(f("max_length"), "need 1 <= min_length <= max_length <= 512");
    }
    (min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheme(name: &str, header: &str, prefix: &str, hash: &str) -> RawScheme {
        RawScheme {
            name: name.into(),
            header: header.into(),
            key_prefix: prefix.into(),
            hash: hash.into(),
            argon2: None,
            min_length: None,
            max_length: None,
            format: None,
            checksum: None,
        }
    }

    #[test]
    fn each_problem_names_its_scheme_and_field() {
        let mut p = Problems::default();
        let raw = [
            scheme("a", "x-api-key", "a_", "md5"),
            scheme("a", "Authorization", "b_", "sha256"),
            scheme("c", "bad header", "tk_", "sha256"),
            scheme("d", "x-api-key", "a_x", "argon2id"),
        ];
        let s = compile(&raw, &mut p);
        assert_eq!(s[1].header, "authorization");
        assert!(s[1].bearer);
        assert_eq!(
            p.fields(),
            [
                "schemes[0].hash",
                "schemes[1].name",
                "schemes[2].header",
                "schemes[3].key_prefix"
            ]
        );
        compile(&[], &mut p);
        assert_eq!(p.fields().last(), Some(&"schemes"));
    }

    #[test]
    fn formats_and_checksums_are_checked() {
        let fmt = |id, alphabet: &str, length| RawFormat {
            id,
            alphabet: alphabet.into(),
            length,
        };
        let mut live = scheme("live", "authorization", "tk_live_", "sha256");
        live.format = Some(fmt(false, "hex", 48));
        live.checksum = Some("crc32".into());
        let mut p = Problems::default();
        let s = compile(&[live], &mut p);
        assert!(p.fields().is_empty(), "{:?}", p.fields());
        assert!(s[0].strict && s[0].checksum && !s[0].format.id);
        assert_eq!(s[0].format.alphabet, Alphabet::Hex);

        let mut bad = Vec::new();
        for (i, (id, alphabet, length, hash)) in [
            (false, "hex", 48, "argon2id"),
            (true, "base64", 32, "sha256"),
            (true, "hex", 31, "sha256"),
            (true, "base62", 21, "sha256"),
            (true, "base62", 129, "sha256"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut s = scheme(&format!("s{i}"), "x-api-key", &format!("p{i}_"), hash);
            s.format = Some(fmt(id, alphabet, length));
            bad.push(s);
        }
        let mut s = scheme("s5", "x-api-key", "p5_", "sha256");
        s.checksum = Some("crc16".into());
        bad.push(s);
        let mut s = scheme("s6", "x-api-key", "p6_", "sha256");
        s.format = Some(RawFormat::default());
        s.max_length = Some(60);
        bad.push(s);
        let mut p = Problems::default();
        compile(&bad, &mut p);
        assert_eq!(
            p.fields(),
            [
                "schemes[0].format.id",
                "schemes[1].format.alphabet",
                "schemes[2].format.length",
                "schemes[3].format.length",
                "schemes[4].format.length",
                "schemes[5].checksum",
                "schemes[6].format"
            ]
        );
    }
}
