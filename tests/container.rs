//! The container image, built from the repository's Dockerfile with podman and run for real:
//! the container starts, its HEALTHCHECK command (`keygate health`) passes, it runs as the
//! image's non-root user, and a key created through the published admin port is allowed
//! through the published HTTP port (a request without it refused).
//!
//! No registry can be reached from the test machines, so the test builds the variant the
//! Dockerfile documents: the binary this test suite built stands in for the build stage
//! (`--build-context build=DIR`), and a Debian bookworm root filesystem made by debootstrap
//! (scripts/tools.sh's `kg_container_base`) for `debian:bookworm-slim` (`--build-arg BASE=`).
//! The Dockerfile's own runtime stage, `RUN apt-get … && useradd …` included, runs unchanged.
//! How podman runs here (chroot isolation for the build, runc with explicit ulimits for the
//! container) is explained in docs/operations.md. What the build stage copies is checked
//! apart: the workspace loads from exactly those files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use bytes::Bytes;
use common::{ADMIN_TOKEN, Deadline, bin, free_port, http_call, http_call_body};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `podman ARGS`, bounded by coreutils' `timeout` so that a wedged podman fails the test
/// instead of hanging it.
fn podman(args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("300")
        .arg("podman")
        .args(args)
        .output()
        .expect("podman runs: scripts/test.sh installs Debian's podman and runc")
}

/// `podman ARGS`, which must succeed: its standard output.
fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the test's container and image, whatever the test's outcome.
struct Cleanup {
    container: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.container]);
        let _ = podman(&["rmi", "--force", &self.image]);
    }
}

/// The debootstrap root filesystem tarball: `KEYGATE_CONTAINER_BASE`, else where
/// scripts/tools.sh puts it. Missing is a failure, never a skip.
fn base_tarball() -> PathBuf {
    let p = std::env::var_os("KEYGATE_CONTAINER_BASE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".tools/debian-bookworm-minbase.tar"));
    assert!(
        p.is_file(),
        "no base image at {}: run scripts/test.sh (kg_container_base in scripts/tools.sh \
         makes it with debootstrap) or set KEYGATE_CONTAINER_BASE",
        p.display()
    );
    p
}

/// The hard limit on open files of this process, which the container may have (raising a
/// limit needs CAP_SYS_RESOURCE, which sandboxes like the test machines' drop).
fn nofile_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
    r.rlim_max.min(65_536)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_starts_passes_its_healthcheck_and_decides() {
    let name = format!("keygate-test-{}", std::process::id());
    let image = format!("localhost/{name}:latest");
    let _cleanup = Cleanup {
        container: name.clone(),
        image: image.clone(),
    };
    let base = "localhost/keygate-test-base:bookworm";
    podman_ok(&["import", "--quiet", base_tarball().to_str().unwrap(), base]);

    // The build stage's output: the binary at the path the runtime stage copies it from,
    // stripped as the build stage strips it.
    let ctx = tempfile::tempdir().unwrap();
    let release = ctx.path().join("src/target/release");
    std::fs::create_dir_all(&release).unwrap();
    let st = Command::new("strip")
        .arg("-o")
        .arg(release.join("keygate"))
        .arg(bin())
        .status()
        .expect("strip (binutils) runs");
    assert!(st.success());
    let build_context = format!("build={}", ctx.path().display());
    let base_arg = format!("BASE={base}");
    podman_ok(&[
        "build",
        // RUN steps without an OCI runtime (see docs/operations.md).
        "--isolation",
        "chroot",
        "--pull=never",
        "--layers=false",
        // Docker's image format keeps HEALTHCHECK (OCI's has no field for it).
        "--format",
        "docker",
        "--build-context",
        &build_context,
        "--build-arg",
        &base_arg,
        "--tag",
        &image,
        repo().to_str().unwrap(),
    ]);

    // Ports are picked free a moment before podman binds them: another process may take one in
    // between, so a failed start is retried on new ports.
    let nofile = format!("nofile={0}:{0}", nofile_limit());
    let token = format!("KEYGATE_ADMIN_TOKEN={ADMIN_TOKEN}");
    let (mut http, mut admin);
    let mut attempt = 0;
    loop {
        (http, admin) = (free_port(), free_port());
        let (ph, pa) = (
            format!("127.0.0.1:{http}:9002"),
            format!("127.0.0.1:{admin}:9003"),
        );
        #[rustfmt::skip]
        let out = podman(&[
            "run", "--detach", "--name", &name,
            // crun refuses this host's cgroup layout; runc runs (docs/operations.md).
            "--runtime", "runc",
            // podman's default limits (1048576) are above what may be set here.
            "--ulimit", &nofile, "--ulimit", "nproc=4096:4096",
            "--publish", &ph, "--publish", &pa,
            "--env", &token,
            &image,
        ]);
        if out.status.success() {
            break;
        }
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        attempt += 1;
        assert!(
            err.contains("address already in use") && attempt < 3,
            "podman run: {err}"
        );
        let _ = podman(&["rm", "--force", "--time", "0", &name]);
    }

    // The image's HEALTHCHECK, run as the container engine runs it, until it passes.
    let d = Deadline::new(
        "the container's HEALTHCHECK to pass",
        Duration::from_secs(60),
    );
    loop {
        let out = podman(&["healthcheck", "run", &name]);
        if out.status.success() {
            break;
        }
        // An image whose process exits will never pass: say so now, with its logs.
        let running = podman_ok(&["inspect", "--format", "{{.State.Running}}", &name]);
        if d.passed() || running != "true" {
            let logs = podman(&["logs", &name]);
            panic!(
                "healthcheck (running: {running}): {}{}\ncontainer logs:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        d.tick().await;
    }
    assert_eq!(
        podman_ok(&["inspect", "--format", "{{.State.Health.Status}}", &name]),
        "healthy"
    );
    assert_eq!(podman_ok(&["exec", &name, "id", "-u"]), "10001");

    // One decision through the container: a key made through its admin API is allowed.
    let admin_addr = format!("127.0.0.1:{admin}").parse().unwrap();
    let made = http_call_body(
        admin_addr,
        "POST",
        "/api/keys",
        &[
            ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
            ("content-type", "application/json"),
        ],
        Bytes::from_static(br#"{"account":"acme","scheme":"live"}"#),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let key = format!("Bearer {}", made.json()["key"].as_str().unwrap());
    let http_addr = format!("127.0.0.1:{http}").parse().unwrap();
    let uri = ("x-original-uri", "/v1/x");
    let allowed = http_call(http_addr, "GET", "/auth", &[uri, ("authorization", &key)]).await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(allowed.header("x-keygate-account"), Some("acme"));
    let refused = http_call(http_addr, "GET", "/auth", &[uri]).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
}

/// Copies the file or directory `from` to `to`.
fn copy(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap();
    }
}

#[test]
fn the_build_stage_copies_every_file_the_workspace_needs() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let stage = dockerfile
        .split("\nFROM ")
        .find(|s| s.contains(" AS build"))
        .expect("a build stage");
    let dir = tempfile::tempdir().unwrap();
    let mut copied = 0;
    for line in stage.lines().filter(|l| l.starts_with("COPY ")) {
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        let (dest, sources) = words.split_last().unwrap();
        for s in sources {
            let to = if dest.ends_with('/') {
                dir.path().join(dest).join(s)
            } else {
                dir.path().join(dest)
            };
            copy(&repo().join(s), &to);
            copied += 1;
        }
    }
    assert!(copied >= 3, "{stage}");
    // Loading the workspace reads every member's manifest: a member the stage does not copy
    // fails here as `cargo build` would in the image.
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
