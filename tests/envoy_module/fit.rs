//! The module fits the pinned Envoy: every callback it imports is in the binary, the ABI
//! matches and stats are served, and a bad keygate config is refused naming the field.

use std::time::Duration;

use crate::common::{self, Harness, http_call, wait_until};
use crate::proxy::{self, envoy_bin, envoy_module, symbols};
use crate::support::{module_on, stats};

#[test]
fn every_callback_the_module_imports_is_in_the_pinned_binary() {
    let module = envoy_module();
    let imported = symbols(
        &module,
        &["-D", "--undefined-only"],
        "envoy_dynamic_module_",
    );
    let exported = symbols(&module, &["-D", "--defined-only"], "envoy_dynamic_module_");
    let envoy = symbols(
        &envoy_bin(),
        &["-D", "--defined-only"],
        "envoy_dynamic_module_",
    );
    assert!(imported.len() >= 10, "{imported:?}");
    let missing: Vec<&String> = imported.difference(&envoy).collect();
    assert!(
        missing.is_empty(),
        "callbacks Envoy does not have: {missing:?}"
    );
    for hook in [
        "program_init",
        "http_filter_config_new",
        "http_filter_config_destroy",
        "http_filter_new",
        "http_filter_destroy",
        "http_filter_request_headers",
        "http_filter_request_body",
        "http_filter_request_trailers",
        "http_filter_response_headers",
        "http_filter_response_body",
        "http_filter_response_trailers",
        "http_filter_stream_complete",
        "http_filter_http_callout_done",
        "http_filter_http_stream_headers",
        "http_filter_http_stream_data",
        "http_filter_http_stream_trailers",
        "http_filter_http_stream_complete",
        "http_filter_http_stream_reset",
        "http_filter_scheduled",
        "http_filter_downstream_above_write_buffer_high_watermark",
        "http_filter_downstream_below_write_buffer_low_watermark",
    ] {
        let name = format!("envoy_dynamic_module_on_{hook}");
        assert!(
            exported.contains(&name),
            "the module does not export {name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_module_loads_with_the_binarys_abi_and_serves_stats() {
    let h = Harness::start().await;
    let (p, _echo) = module_on(&h).await;
    let logs = p.logs();
    assert!(
        logs.contains("Dynamic module ABI version v0.2.0 matched"),
        "the module's ABI version is not the binary's:\n{logs}"
    );
    let r = http_call(p.addr, "GET", "/v1/x", &[]).await;
    assert_eq!(r.status, 401);
    for line in [
        r#"envoy_keygate_decisions{result="deny",reason="missing"} 1"#,
        "envoy_keygate_store_connected{} 1",
        "envoy_keygate_keys{} 0",
    ] {
        // Counts reach Envoy's stats once a second.
        wait_until(
            &format!("the stat {line}"),
            Duration::from_secs(10),
            || async { stats(&p).await.contains(line) },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_refused_with_keygates_message_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    let text =
        common::config_text(&dir.path().join("keygate.json")).replace("hash: sha256", "hash: md5");
    std::fs::write(&path, text).unwrap();
    let out = proxy::run_envoy_module_to_exit(&path);
    assert!(
        !out.status.success(),
        "Envoy started with a bad keygate config"
    );
    let logs =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("schemes[1].hash"), "{logs}");
    assert!(logs.contains("unknown hash `md5`"), "{logs}");
}
