//! Debian's nginx, configured by this build script itself (keygate's change to nginx-sys).
//!
//! Debian's `nginx-dev` package ships the source tree its nginx was built from at
//! `/usr/share/nginx/src`, with the configure flags that decide the module ABI in `conf_flags`
//! (a bash array, `NGX_CONF_FLAGS=( --with-compat … )`). A module is binary-compatible with
//! Debian's `/usr/sbin/nginx` when its bindings come from that tree configured with those
//! flags, so when neither `NGINX_SOURCE_DIR` nor `NGINX_BUILD_DIR` is set, the tree is copied
//! into `OUT_DIR` (configure writes into the tree it runs in, and `/usr/share` is not ours to
//! write) and configured there. Nothing is compiled: the bindings need only the headers
//! configure generates.

use std::env;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `nginx-dev` puts the source tree.
pub const SOURCE_DIR: &str = "/usr/share/nginx/src";

/// The configured copy: `(source dir, build dir)`, or `None` without Debian's tree.
pub fn configure() -> Option<(PathBuf, PathBuf)> {
    let tree = Path::new(SOURCE_DIR);
    let flags_file = tree.join("conf_flags");
    println!("cargo:rerun-if-changed={}", flags_file.display());
    println!(
        "cargo:rerun-if-changed={}",
        tree.join("src/core/nginx.h").display()
    );
    if !flags_file.is_file() || !tree.join("configure").is_file() {
        return None;
    }
    let flags_text = fs::read_to_string(&flags_file).expect("read conf_flags");
    let flags = parse_flags(&flags_text);
    let version = fs::read_to_string(tree.join("src/core/nginx.h")).unwrap_or_default();
    let stamp_text = format!("{flags:?}\n{version}");

    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let copy = out.join("nginx-src");
    let objs = copy.join("objs");
    let stamp = out.join("nginx-configured");
    // Configure takes a while (it compiles dozens of feature probes): once per flags and
    // version.
    if fs::read_to_string(&stamp).ok().as_deref() == Some(stamp_text.as_str())
        && objs.join("ngx_auto_config.h").is_file()
    {
        return Some((copy, objs));
    }
    let _ = fs::remove_dir_all(&copy);
    fs::create_dir_all(&copy).expect("create the source tree's copy");
    for part in ["configure", "auto", "src"] {
        copy_tree(&tree.join(part), &copy.join(part)).expect("copy Debian's nginx source tree");
    }
    let log = out.join("nginx-configure.log");
    let status = Command::new("sh")
        .arg("./configure")
        .args(&flags)
        .current_dir(&copy)
        .stdout(fs::File::create(&log).expect("configure log"))
        .stderr(fs::File::create(out.join("nginx-configure.err")).expect("configure log"))
        .status()
        .expect("run nginx's configure");
    if !status.success() {
        let err = fs::read_to_string(out.join("nginx-configure.err")).unwrap_or_default();
        let tail: Vec<&str> = err.lines().rev().take(20).collect();
        panic!(
            "nginx's configure with Debian's flags failed ({status}); it needs a C compiler \
             and the libraries the flags name (libpcre2-dev, libssl-dev, zlib1g-dev). Its last \
             words:\n{}\n(whole log: {})",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            log.display()
        );
    }
    fs::write(&stamp, stamp_text).expect("write the configure stamp");
    Some((copy, objs))
}

/// The flags of a `conf_flags` file: a bash array assignment, or plain words.
fn parse_flags(text: &str) -> Vec<String> {
    let inner = match (text.find('('), text.rfind(')')) {
        (Some(open), Some(close)) if open < close => &text[open + 1..close],
        _ => text,
    };
    shlex::split(inner).expect("conf_flags is shell words")
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    if from.is_dir() {
        fs::create_dir_all(to)?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        fs::copy(from, to).map(|_| ())
    }
}
