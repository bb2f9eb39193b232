//! The metric names a PromQL expression reads, so that a test can hold every expression in the
//! shipped rules and dashboard to the names keygate exports. Prometheus 2.42 (Debian's) has no
//! API that returns a parsed query, so this is a small lexer: it drops strings, comments,
//! label matchers (`{…}`), ranges (`[…]`), label lists after `by`/`without`/`on`/`ignoring`/
//! `group_left`/`group_right`, numbers, keywords, Grafana variables (`$instance`) and every
//! identifier followed by `(` (functions); what is left names a series.

use std::collections::BTreeSet;

/// Words that are operators, modifiers or aggregations, never metric names (PromQL keywords are
/// case-insensitive).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// Keywords followed by a parenthesized list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Index just past the string literal that starts at `i` (quote at `i`).
fn skip_string(s: &[char], mut i: usize) -> usize {
    let q = s[i];
    i += 1;
    while i < s.len() && s[i] != q {
        // Backquoted strings have no escapes.
        if s[i] == '\\' && q != '`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// Index just past the bracket that closes the one at `i`, skipping strings inside.
fn skip_group(s: &[char], mut i: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    while i < s.len() {
        match s[i] {
            '"' | '\'' | '`' => {
                i = skip_string(s, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

fn next_non_space(s: &[char], mut i: usize) -> usize {
    while i < s.len() && s[i].is_whitespace() {
        i += 1;
    }
    i
}

/// The metric names `expr` selects.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let s: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(&s, i),
            '{' => i = skip_group(&s, i, '{', '}'),
            '[' => i = skip_group(&s, i, '[', ']'),
            '#' => {
                while i < s.len() && s[i] != '\n' {
                    i += 1;
                }
            }
            // A Grafana variable: `$name`, `${name}`.
            '$' => {
                i += 1;
                if i < s.len() && s[i] == '{' {
                    i = skip_group(&s, i, '{', '}');
                }
                while i < s.len() && is_ident(s[i]) {
                    i += 1;
                }
            }
            // A number or a duration (`0.99`, `1e-3`, `5m`, `0x1f`).
            c if c.is_ascii_digit() || c == '.' => {
                while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '.') {
                    i += 1;
                }
            }
            c if is_ident_start(c) => {
                let start = i;
                while i < s.len() && is_ident(s[i]) {
                    i += 1;
                }
                let word: String = s[start..i].iter().collect();
                let lower = word.to_ascii_lowercase();
                let next = next_non_space(&s, i);
                let call = next < s.len() && s[next] == '(';
                if LABEL_LISTS.contains(&lower.as_str()) {
                    if call {
                        i = skip_group(&s, next, '(', ')');
                    }
                } else if !call && !KEYWORDS.contains(&lower.as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn the_lexer_finds_exactly_the_selected_names() {
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        metric_names(
            r#"sum by (job, reason) (rate(a_total{x="}", y=~"a|b"}[5m])) / ignoring (reason)
               group_left b > 2 * c offset 5m and on (instance) d == +Inf"#
        ),
        set(&["a_total", "b", "c", "d"])
    );
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(h_bucket{instance=~\"$instance\"}[$__rate_interval])))"
        ),
        set(&["h_bucket"])
    );
    assert_eq!(
        metric_names("instance:k_decisions:rate5m > 1e-3 unless count(x) BY (a)"),
        set(&["instance:k_decisions:rate5m", "x"])
    );
    assert_eq!(metric_names("up{job=\"keygate\"} == 0"), set(&["up"]));
}
