//! Prometheus's own tools for the tests: `promtool` (run to completion) and a real `prometheus`
//! server (Debian's `prometheus` package, which scripts/test.sh installs) that scrapes the
//! targets it is given, loads the shipped rules, and answers PromQL over its HTTP API. A
//! missing binary is a failure, never a skip.
#![allow(dead_code)]

pub mod promql;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::common::{Deadline, free_port, http_call};

/// The repository's root, where the shipped rules and dashboard live.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped rules file.
pub fn rules_file() -> PathBuf {
    repo().join("deploy/prometheus/keygate-rules.yaml")
}

/// A Prometheus program: `$var`, else `name` on PATH.
fn tool(name: &str, var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found: run scripts/test.sh (it installs Debian's `prometheus` \
                 package) or set {var}"
            )
        })
}

/// Runs `promtool ARGS` with `stdin` as its standard input.
pub fn promtool(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(tool("promtool", "KEYGATE_PROMTOOL"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    // promtool may exit before reading all of it (a parse error): a broken pipe is its answer.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// `promtool check metrics` on an exposition: its lint findings and parse errors, or `Ok`.
pub fn check_metrics(text: &str) -> Result<(), String> {
    let out = promtool(&["check", "metrics"], text);
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // Exit 3 is a lint finding, 1 a parse error; a clean exposition prints nothing.
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {said}", out.status))
    }
}

/// A `prometheus` server on 127.0.0.1 with its own storage, killed on drop.
pub struct Prometheus {
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping each of `targets` every second in the job `keygate`, with the
    /// shipped rules evaluated every second, and waits until it is ready.
    pub async fn start(targets: &[SocketAddr]) -> Prometheus {
        let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [\"{}\"]\n\
             scrape_configs:\n  - job_name: keygate\n    static_configs:\n      - targets: [{}]\n",
            rules_file().display(),
            list.join(", ")
        );
        for _ in 0..5 {
            match Prometheus::launch(&config).await {
                Ok(p) => return p,
                // Another test took the free port in between: try another.
                Err(log) if log.contains("address already in use") => continue,
                Err(log) => panic!("prometheus did not start:\n{log}"),
            }
        }
        panic!("prometheus found no free port in 5 tries");
    }

    async fn launch(config: &str) -> Result<Prometheus, String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = dir.path().join("prometheus.log");
        let child = Command::new(tool("prometheus", "KEYGATE_PROMETHEUS"))
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("prometheus runs");
        let mut p = Prometheus {
            addr,
            child,
            log,
            _dir: dir,
        };
        let d = Deadline::new("prometheus to be ready", Duration::from_secs(60));
        loop {
            if p.child.try_wait().unwrap().is_some() {
                return Err(p.log());
            }
            // http_call fails the test on a refused connection: ask only once it listens.
            if tokio::net::TcpStream::connect(addr).await.is_ok()
                && http_call(addr, "GET", "/-/ready", &[]).await.status == 200
            {
                return Ok(p);
            }
            d.tick().await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /api/v1/<path>?<query>`: the answer's JSON, whatever its status.
    pub async fn api(&self, path: &str, params: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let r = http_call(self.addr, "GET", &format!("/api/v1/{path}?{query}"), &[]).await;
        let v = serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null);
        (r.status, v)
    }

    /// An instant query's result vector; fails the test if Prometheus refuses the query.
    pub async fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let (status, v) = self.api("query", &[("query", expr)]).await;
        assert_eq!(status, 200, "Prometheus refused `{expr}`: {v}");
        assert_eq!(v["status"], "success", "`{expr}`: {v}");
        match &v["data"]["result"] {
            serde_json::Value::Array(a) => a.clone(),
            // A scalar or string result is one value.
            other => vec![other.clone()],
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The metric names in a Prometheus text exposition, with the series names a histogram or a
/// summary adds (`_bucket`, `_sum`, `_count`).
pub fn exposition_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (Some(name), Some(kind)) = (it.next(), it.next()) else {
                continue;
            };
            names.insert(name.to_string());
            if kind == "histogram" || kind == "summary" {
                for s in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            }
        }
    }
    names
}

/// A YAML file of the repository as JSON values.
pub fn yaml(path: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every rule of the shipped rules file.
pub fn rules() -> Vec<serde_json::Value> {
    let v = yaml("deploy/prometheus/keygate-rules.yaml");
    let groups = v["groups"].as_array().expect("groups");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect()
}

/// Every PromQL expression of the shipped dashboard, with its panel's title, and the metric
/// names its variables' `label_values(…)` queries read.
pub fn dashboard() -> (Vec<(String, String)>, std::collections::BTreeSet<String>) {
    let text = std::fs::read_to_string(repo().join("deploy/grafana/keygate.json")).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    let mut stack: Vec<&serde_json::Value> = d["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = stack.pop() {
        stack.extend(p["panels"].as_array().into_iter().flatten());
        for t in p["targets"].as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            exprs.push((
                title,
                t["expr"].as_str().expect("a target has an expr").into(),
            ));
        }
    }
    let mut variables = std::collections::BTreeSet::new();
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            let inner = q
                .strip_prefix("label_values(")
                .expect("label_values(metric, label)");
            variables.insert(inner.split(',').next().unwrap().trim().to_string());
        }
    }
    (exprs, variables)
}
