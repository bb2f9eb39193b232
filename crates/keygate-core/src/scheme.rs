//! Credential schemes: which header carries a key, its prefix, its shape and how it is stored.

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
/// Length of the secret in generated keys (base62, about 190 bits from the OS CSPRNG).
pub const SECRET_LEN: usize = 32;

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
    /// sha256: accepted length range of the part after the prefix.
    pub min_len: usize,
    pub max_len: usize,
}

impl Scheme {
    pub fn new(
        name: String,
        header: String,
        key_prefix: String,
        hash: HashKind,
        min_len: usize,
        max_len: usize,
    ) -> Scheme {
        let bearer = header == "authorization";
        Scheme {
            name,
            header,
            bearer,
            key_prefix,
            hash,
            min_len,
            max_len,
        }
    }

    pub fn is_argon2(&self) -> bool {
        matches!(self.hash, HashKind::Argon2id { .. })
    }

    /// Checks a presented key's shape. Returns the public id for Argon2 keys
    /// (`Some("")` is never returned), `None` if the shape is wrong.
    /// For sha256 keys the returned id is empty: they are found by digest.
    pub fn shape<'k>(&self, key: &'k [u8]) -> Option<&'k [u8]> {
        let body = key.strip_prefix(self.key_prefix.as_bytes())?;
        match self.hash {
            HashKind::Argon2id { .. } => {
                if body.len() != ID_LEN + 1 + SECRET_LEN || body[ID_LEN] != b'_' {
                    return None;
                }
                let (id, secret) = (&body[..ID_LEN], &body[ID_LEN + 1..]);
                let alnum = |s: &[u8]| s.iter().all(u8::is_ascii_alphanumeric);
                (alnum(id) && alnum(secret)).then_some(id)
            }
            HashKind::Sha256 => {
                let ok = (self.min_len..=self.max_len).contains(&body.len())
                    && body
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-');
                ok.then_some(&body[..0])
            }
        }
    }
}
