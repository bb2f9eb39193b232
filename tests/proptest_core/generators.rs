//! The generated data: specs of key tables and requests, and the strategies that draw them.

use keygate::core::key::AccountStatus;
use proptest::prelude::*;

use crate::fixture::{ACCOUNTS, SCHEMES, SCOPES, TABLE_KEYS, fixture};

#[derive(Debug, Clone, Copy)]
pub(crate) enum Expiry {
    Never,
    Past,
    Now,
    Future,
}

#[derive(Debug, Clone)]
pub(crate) struct KeySpec {
    pub(crate) account: usize,
    pub(crate) scopes: Option<Vec<usize>>,
    pub(crate) expiry: Expiry,
    pub(crate) revoked: bool,
    pub(crate) disabled: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct AccountSpec {
    pub(crate) status: AccountStatus,
    pub(crate) plan: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct TableSpec {
    pub(crate) keys: Vec<Option<KeySpec>>,
    pub(crate) accounts: Vec<Option<AccountSpec>>,
    /// How many records go into `Table::build`; the rest arrive through `with_changes`.
    pub(crate) split: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum Mangle {
    FlipLast,
    Truncate(usize),
    Append(u8),
    Insert(usize, u8),
    Uppercase,
    SwapPrefix,
}

#[derive(Debug, Clone)]
pub(crate) enum Form {
    /// The key as the whole value.
    Raw,
    /// `<word><spaces><key>` with surrounding whitespace.
    Bearer {
        word: &'static str,
        sep: &'static str,
        lead: &'static str,
        trail: &'static str,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum ValueSpec {
    Key {
        idx: usize,
        mangle: Option<Mangle>,
        form: Form,
    },
    Bytes(Vec<u8>),
    Lit(&'static str),
}

#[derive(Debug, Clone)]
pub(crate) struct ReqSpec {
    pub(crate) method: &'static str,
    pub(crate) path: String,
    pub(crate) host: Option<&'static str>,
    pub(crate) headers: Vec<(String, ValueSpec)>,
}

fn expiry() -> impl Strategy<Value = Expiry> {
    prop_oneof![
        6 => Just(Expiry::Never),
        1 => Just(Expiry::Past),
        1 => Just(Expiry::Now),
        2 => Just(Expiry::Future),
    ]
}

fn key_spec() -> impl Strategy<Value = KeySpec> {
    (
        0..ACCOUNTS.len(),
        prop::option::weighted(0.4, prop::collection::vec(0..SCOPES.len(), 0..4)),
        expiry(),
        // Revoked or disabled one time in ten, as revoked alone was: allows stay common.
        prop::bool::weighted(0.08),
        prop::bool::weighted(0.02),
    )
        .prop_map(|(account, scopes, expiry, revoked, disabled)| KeySpec {
            account,
            scopes,
            expiry,
            revoked,
            disabled,
        })
}

fn account_spec() -> impl Strategy<Value = AccountSpec> {
    (
        prop_oneof![
            6 => Just(AccountStatus::Active),
            1 => Just(AccountStatus::PastDue),
            1 => Just(AccountStatus::Disabled),
        ],
        prop_oneof![3 => Just(0usize), 3 => Just(1), 1 => Just(2), 1 => Just(3)],
    )
        .prop_map(|(status, plan)| AccountSpec { status, plan })
}

pub(crate) fn table_spec() -> impl Strategy<Value = TableSpec> {
    (
        prop::collection::vec(prop::option::weighted(0.9, key_spec()), TABLE_KEYS),
        prop::collection::vec(prop::option::weighted(0.5, account_spec()), ACCOUNTS.len()),
        0..=TABLE_KEYS + ACCOUNTS.len(),
    )
        .prop_map(|(keys, accounts, split)| TableSpec {
            keys,
            accounts,
            split,
        })
}

fn mangle() -> impl Strategy<Value = Mangle> {
    prop_oneof![
        Just(Mangle::FlipLast),
        (0usize..60).prop_map(Mangle::Truncate),
        any::<u8>().prop_map(Mangle::Append),
        (
            0usize..60,
            prop_oneof![Just(0u8), Just(0xff), Just(b' '), Just(b','), any::<u8>()]
        )
            .prop_map(|(i, b)| Mangle::Insert(i, b)),
        Just(Mangle::Uppercase),
        Just(Mangle::SwapPrefix),
    ]
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![
        1 => Just(Form::Raw),
        3 => (
            prop::sample::select(&[
                "Bearer", "bearer", "BEARER", "BeArEr", "Bearer:", "Basic", "Token", "Bear",
            ][..]),
            prop::sample::select(&[" ", " ", "   ", "", "\t", " \t"][..]),
            prop::sample::select(&["", "", " ", "\t"][..]),
            prop::sample::select(&["", "", " ", "  \t"][..]),
        )
            .prop_map(|(word, sep, lead, trail)| Form::Bearer {
                word,
                sep,
                lead,
                trail,
            }),
    ]
}

fn value_spec() -> impl Strategy<Value = ValueSpec> {
    let pool = fixture().pool.len();
    prop_oneof![
        6 => (0..pool, prop::option::weighted(0.25, mangle()), form())
            .prop_map(|(idx, mangle, form)| ValueSpec::Key { idx, mangle, form }),
        1 => prop::collection::vec(any::<u8>(), 0..80).prop_map(ValueSpec::Bytes),
        1 => prop::sample::select(&[
            "", " ", "Bearer", "Bearer ", "Bearer    ", "toon_", "tk_live_", "Bearer tk_live_",
            "null", "\0", "Bearer \u{0}", "Bearer tk_live_AAAAAAAAAAAA_BBBB,Bearer x",
        ][..])
        .prop_map(ValueSpec::Lit),
    ]
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(&["x-api-key", "X-API-KEY", "X-Api-Key"][..]),
        4 => prop::sample::select(&["authorization", "Authorization", "AUTHORIZATION"][..]),
        4 => prop::sample::select(&["cookie", "x-key", "authorisation", "x-api-key2", "api-key"][..]),
    ]
    .prop_map(String::from)
}

/// One header carrying a pool key the way its scheme expects (raw in `x-api-key`, Bearer in
/// `Authorization`), so a good share of requests present a usable credential.
fn proper_credential() -> impl Strategy<Value = (String, ValueSpec)> {
    let pool = fixture().pool.len();
    (
        prop_oneof![4 => 0..TABLE_KEYS, 1 => 0..pool],
        prop::sample::select(&["Bearer", "bearer", "BEARER", "bEaReR"][..]),
    )
        .prop_map(|(idx, word)| {
            let scheme = fixture().pool[idx].scheme;
            let (header, _) = SCHEMES[scheme];
            let form = if header == "authorization" {
                Form::Bearer {
                    word,
                    sep: " ",
                    lead: "",
                    trail: "",
                }
            } else {
                Form::Raw
            };
            (
                header.to_string(),
                ValueSpec::Key {
                    idx,
                    mangle: None,
                    form,
                },
            )
        })
}

pub(crate) fn path() -> impl Strategy<Value = String> {
    let segment = prop::sample::select(
        &[
            "v1",
            "v1",
            "v2",
            "tokens",
            "tokens",
            "%74okens",
            "account",
            "usage",
            "only-live",
            "only-api-key",
            "admin",
            "x",
            ".",
            "..",
            "%2e%2E",
            "",
            "tokensmith",
            "v1%2Ftokens",
            "v1%2ftokens",
            "v1%5Ctokens",
            "a%3Fb",
            "%zz",
            "%4",
            "%41",
            "a b",
            "é",
            "€ü",
        ][..],
    );
    let sep = prop::sample::select(&["/", "/", "/", "/", "//", "\\"][..]);
    let prefix = prop::sample::select(
        &[
            "",
            "",
            "",
            "",
            "http://h.example",
            "HTTPS://h.example",
            "http:",
            "*",
            "v1",
        ][..],
    );
    let tail = prop::sample::select(&["", "", "", "/", "?x=1", "?a=/v1/tokens", "#f"][..]);
    prop_oneof![
        8 => (prefix, prop::collection::vec((sep, segment), 0..5), tail).prop_map(
            |(prefix, segs, tail)| {
                let mut s = prefix.to_string();
                for (sep, seg) in segs {
                    s.push_str(sep);
                    s.push_str(seg);
                }
                if s.is_empty() || s == "http://h.example" || s == "HTTPS://h.example" {
                    // Mostly paths: an empty target is covered by the other branch.
                    s.push('/');
                }
                s.push_str(tail);
                s
            }
        ),
        1 => "\\PC{0,20}",
    ]
}

pub(crate) fn req_spec() -> impl Strategy<Value = ReqSpec> {
    (
        prop::sample::select(
            &[
                "GET", "GET", "POST", "POST", "DELETE", "PUT", "get", "post", "Delete", "FOO",
                "M-SEARCH", "",
            ][..],
        ),
        path(),
        prop::sample::select(
            &[
                Some("api.example"),
                Some("api.example"),
                Some("api.example"),
                Some("api.example"),
                Some("api.example"),
                Some("api.example"),
                Some("API.Example:443"),
                Some("api.example."),
                Some("a.internal.example"),
                Some("x.a.internal.example:8443"),
                Some("internal.example"),
                Some("evilinternal.example"),
                Some("other.example"),
                Some("[::1]:80"),
                Some(""),
                None,
            ][..],
        ),
        prop::option::weighted(0.75, proper_credential()),
        prop_oneof![
            6 => Just(0..1),
            3 => Just(1..2),
            1 => Just(2..3),
        ]
        .prop_flat_map(|n| prop::collection::vec((header_name(), value_spec()), n)),
    )
        .prop_map(|(method, path, host, proper, extra)| {
            let mut headers: Vec<(String, ValueSpec)> = proper.into_iter().collect();
            headers.extend(extra);
            ReqSpec {
                method,
                path,
                host,
                headers,
            }
        })
}
