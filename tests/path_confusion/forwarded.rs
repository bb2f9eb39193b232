//! Every row through every front: the answer it gets, and no reading of what reached the
//! upstream escapes the decision.

use crate::common::raw::send_raw;
use crate::fronts::{FRONTS, Front, classify, request, start};
use crate::model::escapes;
use crate::rows::Answer::Pass;
use crate::rows::{KEY_SCOPES, ROWS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reading_of_a_forwarded_path_escapes_the_decision() {
    let f = start().await;
    let key = f.h.key("live", "acme", Some(KEY_SCOPES)).await.key;
    f.until_every_front_sees(&key).await;
    let port = f.echo.addr.port();
    let mut report = String::new();
    let mut failures = Vec::new();
    for row in ROWS {
        for (i, front) in FRONTS.iter().enumerate() {
            let proxy = &f.proxies.iter().find(|(fr, _)| fr == front).unwrap().1;
            let before = f.echo.seen().len();
            let r = send_raw(
                proxy.addr,
                request(row.target, row.host, row.key.then_some(key.as_str())),
            )
            .await;
            let got = classify(&r, port);
            let seen = f.echo.seen();
            let upstream = seen.get(before);
            if let Some(up) = upstream {
                assert_eq!(got, Pass, "{front:?} {}: reached the upstream", row.name);
                let host = up.headers.get("host").and_then(|v| v.first()).unwrap();
                failures.extend(escapes(row, *front, &up.uri, host));
            } else {
                assert_ne!(
                    got, Pass,
                    "{front:?} {}: 200 without the upstream",
                    row.name
                );
            }
            report.push_str(&format!(
                "{:<40} {:<10} {:<16} {}\n",
                row.name,
                format!("{front:?}"),
                format!("{got:?}"),
                upstream.map_or("-".to_string(), |u| format!(
                    "{} (Host {})",
                    u.uri,
                    u.headers.get("host").and_then(|v| v.first()).unwrap()
                )),
            ));
            let want = row.want[i.min(2) * usize::from(*front != Front::EnvoyModule)];
            if got != want {
                failures.push(format!(
                    "{front:?} {} ({}): want {want:?}, got {got:?}",
                    row.name, row.target
                ));
            }
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "{}\n{report}", failures.join("\n"));
}
