//! Credential schemes: which header carries a key, its prefix, its shape and how it is stored.
//!
//! A key is `<key_prefix>[<id>_]<secret>[<checksum>]`: the id (12 base62 characters) when the
//! scheme's format has one, the secret in the format's alphabet and length, and with
//! `checksum: crc32` six base62 characters of the CRC-32 of everything before them, so that a
//! secret scanner (or keygate, before any lookup) can tell a mistyped or made-up key from a
//! real one offline.

/// How keys of a scheme are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    /// `<prefix><id>_<secret>`: looked up by id, verified with Argon2id.
    Argon2id {
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    },
    /// Looked up by the SHA-256 digest of the whole key.
    Sha256,
}

/// Length of the public id in generated keys (base62, about 71 bits: unique, not secret).
pub const ID_LEN: usize = 12;
/// Length of the secret in generated keys by default (base62, about 190 bits).
pub const SECRET_LEN: usize = 32;
/// Length of a CRC-32 checksum in base62 (62^6 > 2^32).
pub const CHECKSUM_LEN: usize = 6;

/// The characters of a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    /// `0-9A-Za-z`.
    Base62,
    /// `0-9a-f`.
    Hex,
}

impl Alphabet {
    pub fn contains(self, b: u8) -> bool {
        match self {
            Alphabet::Base62 => b.is_ascii_alphanumeric(),
            Alphabet::Hex => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        }
    }

    /// Bits of randomness per character.
    pub fn bits(self) -> f64 {
        match self {
            Alphabet::Base62 => 62f64.log2(),
            Alphabet::Hex => 4.0,
        }
    }
}

/// The shape of generated keys: whether they carry a public id, and the secret's alphabet and
/// length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyFormat {
    pub id: bool,
    pub alphabet: Alphabet,
    pub length: usize,
}

impl Default for KeyFormat {
    fn default() -> Self {
        KeyFormat {
            id: true,
            alphabet: Alphabet::Base62,
            length: SECRET_LEN,
        }
    }
}

/// A compiled scheme.
#[derive(Debug, Clone)]
pub struct Scheme {
    pub name: String,
    /// Lowercase header name.
    pub header: String,
    /// The header is `Authorization` and carries `Bearer <key>`.
    pub bearer: bool,
    pub key_prefix: String,
    pub hash: HashKind,
    /// sha256 without an explicit format: accepted length range of the part after the prefix.
    pub min_len: usize,
    pub max_len: usize,
    /// The shape of generated keys.
    pub format: KeyFormat,
    /// Presented keys must have exactly `format`'s shape (always so for Argon2 schemes); else
    /// a sha256 scheme takes any key within `min_len..=max_len` of `[A-Za-z0-9_-]`, so that
    /// digests imported from other systems keep working.
    pub strict: bool,
    /// Keys end with a CRC-32 checksum of the rest.
    pub checksum: bool,
}

impl Scheme {
    /// A scheme with the default format (strict for Argon2, lenient for sha256) and no
    /// checksum.
    pub fn new(
        name: String,
        header: String,
        key_prefix: String,
        hash: HashKind,
        min_len: usize,
        max_len: usize,
    ) -> Scheme {
        let bearer = header == "authorization";
        let strict = matches!(hash, HashKind::Argon2id { .. });
        Scheme {
            name,
            header,
            bearer,
            key_prefix,
            hash,
            min_len,
            max_len,
            format: KeyFormat::default(),
            strict,
            checksum: false,
        }
    }

    /// This scheme with an explicit format, which presented keys must follow.
    pub fn with_format(mut self, format: KeyFormat) -> Scheme {
        self.format = format;
        self.strict = true;
        self
    }

    /// This scheme with CRC-32 checksums.
    pub fn with_checksum(mut self) -> Scheme {
        self.checksum = true;
        self
    }

    pub fn is_argon2(&self) -> bool {
        matches!(self.hash, HashKind::Argon2id { .. })
    }

    /// Checks a presented key's shape (and checksum). Returns the public id for Argon2 keys,
    /// an empty id for sha256 keys (found by digest), `None` if the shape is wrong.
    pub fn shape<'k>(&self, key: &'k [u8]) -> Option<&'k [u8]> {
        let mut body = key.strip_prefix(self.key_prefix.as_bytes())?;
        if self.checksum {
            let split = key.len().checked_sub(CHECKSUM_LEN)?;
            let (rest, sum) = key.split_at(split);
            if body.len() < CHECKSUM_LEN || sum != checksum(rest) {
                return None;
            }
            body = &body[..body.len() - CHECKSUM_LEN];
        }
        if !self.strict {
            let ok = (self.min_len..=self.max_len).contains(&body.len())
                && body.iter().all(|b| LENIENT[usize::from(*b)]);
            return ok.then_some(&body[..0]);
        }
        let f = &self.format;
        let (id, secret) = if f.id {
            if body.len() != ID_LEN + 1 + f.length || body[ID_LEN] != b'_' {
                return None;
            }
            (&body[..ID_LEN], &body[ID_LEN + 1..])
        } else {
            (&body[..0], body)
        };
        let ok = secret.len() == f.length
            && id.iter().all(u8::is_ascii_alphanumeric)
            && secret.iter().all(|b| f.alphabet.contains(*b));
        match ok {
            true if self.is_argon2() => Some(id),
            true => Some(&body[..0]),
            false => None,
        }
    }
}

/// `[A-Za-z0-9_-]`, as a table: the check runs over every presented key, and a lookup a
/// byte is a third of the comparisons.
const LENIENT: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
        b += 1;
    }
    t
};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The base62 digits of `n`, most significant first.
pub fn base62(mut n: u32, out: &mut [u8; CHECKSUM_LEN]) {
    for d in out.iter_mut().rev() {
        *d = BASE62[(n % 62) as usize];
        n /= 62;
    }
}

/// The checksum of `rest` (the key up to its checksum): CRC-32 (IEEE) in six base62 digits,
/// zero-padded, as GitHub's tokens carry theirs.
pub fn checksum(rest: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut out = [0; CHECKSUM_LEN];
    base62(crc32fast::hash(rest), &mut out);
    out
}

#[cfg(test)]
mod tests;
