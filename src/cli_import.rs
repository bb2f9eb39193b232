//! `keygate keys import --file`: a bulk import of JSON Lines, with a progress bar on a
//! terminal and plain progress lines when stderr is piped; the report goes to stdout as JSON.

use std::io::{IsTerminal, Read};
use std::path::Path;

use keygate::admin::ManageError;
use keygate::admin::manage::Manager;

/// Lines between two plain progress lines.
const PLAIN_EVERY: usize = 10_000;

pub async fn run(m: &Manager, actor: &str, file: &Path) -> Result<serde_json::Value, ManageError> {
    let text = read(file).map_err(|e| ManageError::BadRequest {
        field: "file",
        message: format!("{}: {e}", file.display()),
    })?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} importing [{bar:40}] {pos}/{len} lines ({per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    });
    let mut last_plain = 0;
    let report = m
        .import_keys(actor, &text, |done, total| match &bar {
            Some(b) => {
                b.set_length(total as u64);
                b.set_position(done as u64);
            }
            None if done == total || done >= last_plain + PLAIN_EVERY => {
                last_plain = done;
                eprintln!("keygate: import: {done} of {total} lines done");
            }
            None => {}
        })
        .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    report.map(|r| serde_json::to_value(r).unwrap_or_default())
}

fn read(file: &Path) -> std::io::Result<String> {
    if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(file)
    }
}
