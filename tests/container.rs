//! The container image and the compose stack, against the real Docker engine (no mocks).
//!
//! The image: a statically linked release binary (glibc with `+crt-static`, without the release
//! profile's LTO, built once per test process into `target/static`; cargo makes later builds
//! no-ops), then the repository
//! Dockerfile's `runtime` stage, byte for byte, on top of a stand-in `builder` stage that holds
//! that binary: the real builder stage needs `rust:*` from a registry, which this machine cannot
//! reach. Containers run on a network of their own. The fake PD runs in this process, bound to
//! that network's gateway address, and the exporter reaches it by a container *name* through a
//! static TCP forwarder image, so the name goes through Docker's DNS and the static glibc resolver.
//!
//! Every container, image and network is named `thx-test-<what>-<pid>-<ms>-<n>`, carries the
//! label `tikv-health-exporter.test`, and is removed by a guard, also when a test panics. After a
//! killed run: `docker rm -f $(docker ps -aq -f label=tikv-health-exporter.test)`, then the same
//! with `docker rmi -f $(docker images -aq ...)` and `docker network rm $(docker network ls -q ...)`.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::exporter::{http_get, sample};
use support::fake_pd::{FakePd, cluster};
use support::wait;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// What the Dockerfile's builder stage sets; checked against the Dockerfile below.
const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static";
const TEST_LABEL: &str = "tikv-health-exporter.test";
const MAX_IMAGE_BYTES: u64 = 40_000_000;
const STATE_FILE: &str = "/var/lib/tikv-health-exporter/state.json";

// ---------------------------------------------------------------------------------------------
// Docker helpers

/// `thx-test-<what>-<pid>-<ms>-<n>`: unique per run and per call.
fn unique(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("thx-test-{what}-{}-{ms}-{n}", std::process::id())
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("cannot run `docker`: these tests need the Docker CLI and a running engine")
}

/// Runs `docker ARGS`, panics with its stderr unless it succeeds, returns its trimmed stdout.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "`docker {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

enum Kind {
    Container,
    /// An image tag, plus every image labelled `TEST_LABEL=<tag>` (the stand-in builder stage).
    Image,
    Network,
}

/// Removes a Docker object when dropped, also while a test panics.
struct Guard {
    kind: Kind,
    name: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let name = self.name.as_str();
        let mut failures = Vec::new();
        let mut run = |args: &[&str]| {
            let out = docker(args);
            let err = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() && !err.contains("No such") {
                failures.push(format!("docker {}: {}", args.join(" "), err.trim()));
            }
            out
        };
        match self.kind {
            Kind::Container => {
                run(&["rm", "-f", "-v", name]);
            }
            Kind::Image => {
                run(&["rmi", "-f", name]);
                let filter = format!("label={TEST_LABEL}={name}");
                let out = run(&["images", "-aq", "--filter", &filter]);
                let ids = String::from_utf8_lossy(&out.stdout).into_owned();
                let mut ids: Vec<&str> = ids.split_whitespace().collect();
                ids.dedup();
                if !ids.is_empty() {
                    run(&[&["rmi", "-f"][..], &ids[..]].concat());
                }
            }
            Kind::Network => {
                run(&["network", "rm", name]);
            }
        }
        for f in failures {
            eprintln!("cleanup: {f}");
        }
    }
}

/// An image built for this test; removed on drop.
struct Image {
    tag: String,
    _guard: Guard,
}

/// `docker build --no-cache` of `ctx` as `tag`.
///
/// Without the cache: the classic builder would take intermediate images of other builds
/// with the same steps (the runtime stage's `COPY ca-certificates.crt` is the same for every
/// build, in every worktree, and the sibling test builds the same binary), and another test's
/// [`Guard`] removes its image together with its untagged parents. A build that had just
/// taken such a parent from the cache then failed ("unknown parent image ID" / "No such
/// image"), more often the more tests run at once. Now every intermediate image belongs to
/// one build, and only its own Guard removes it.
fn build_image(tag: String, ctx: &Path) -> Image {
    let guard = Guard {
        kind: Kind::Image,
        name: tag.clone(),
    };
    let label = format!("{TEST_LABEL}={tag}");
    let ctx = ctx.to_str().unwrap();
    docker_ok(&[
        "build",
        "-q",
        "--no-cache",
        "--force-rm",
        "--label",
        &label,
        "-t",
        &tag,
        ctx,
    ]);
    Image { tag, _guard: guard }
}

/// A running container; removed (with its anonymous volumes) on drop.
struct Container {
    name: String,
    _guard: Guard,
}

/// `docker run -d --name <unique> ARGS`.
fn run(what: &str, args: &[&str]) -> Container {
    let name = unique(what);
    let guard = Guard {
        kind: Kind::Container,
        name: name.clone(),
    };
    docker_ok(
        &[
            &["run", "-d", "--name", &name, "--label", TEST_LABEL][..],
            args,
        ]
        .concat(),
    );
    Container {
        name,
        _guard: guard,
    }
}

impl Container {
    /// Its stdout and stderr so far.
    fn logs(&self) -> String {
        let out = docker(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The host address `docker run -p 127.0.0.1::PORT` published the container's `port` on.
    fn published(&self, port: u16) -> SocketAddr {
        let out = docker_ok(&["port", &self.name, &format!("{port}/tcp")]);
        let first = out.lines().next().unwrap_or_default();
        first
            .parse()
            .unwrap_or_else(|_| panic!("`docker port` printed {out:?}"))
    }

    /// `.State.<field>` from `docker inspect`.
    fn state(&self, field: &str) -> String {
        docker_ok(&[
            "inspect",
            "-f",
            &format!("{{{{.State.{field}}}}}"),
            &self.name,
        ])
    }

    /// Polls `GET /metrics` on `addr` until `done` accepts the body; panics with the container's
    /// logs on timeout or if the container exits.
    fn wait_metrics(&self, addr: SocketAddr, done: impl Fn(&str) -> bool) -> String {
        wait::until_or(
            &format!("container {}: /metrics to satisfy the test", self.name),
            wait::PATIENCE,
            || {
                let last = match http_get(addr, "/metrics") {
                    Some((200, _, body)) if done(&body) => return Ok(body),
                    other => other,
                };
                assert!(
                    self.state("Running") == "true",
                    "container {} exited ({}); logs:\n{}",
                    self.name,
                    self.state("ExitCode"),
                    self.logs()
                );
                Err(format!("{last:?}"))
            },
            || format!("logs:\n{}", self.logs()),
        )
    }
}

/// A network of its own for one test, and the host's address on it (its gateway).
struct Network {
    name: String,
    gateway: IpAddr,
    _guard: Guard,
}

fn network() -> Network {
    let name = unique("net");
    docker_ok(&["network", "create", "--label", TEST_LABEL, &name]);
    let guard = Guard {
        kind: Kind::Network,
        name: name.clone(),
    };
    let gateways = docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Gateway}} {{end}}",
        &name,
    ]);
    let gateway = gateways
        .split_whitespace()
        .filter_map(|g| g.parse::<IpAddr>().ok())
        .find(IpAddr::is_ipv4)
        .unwrap_or_else(|| panic!("network {name} has no IPv4 gateway: {gateways:?}"));
    Network {
        name,
        gateway,
        _guard: guard,
    }
}

// ---------------------------------------------------------------------------------------------
// The static binary and the images

/// The statically linked release binary, built like the Dockerfile's builder stage builds it
/// (into `target/static`, so it never invalidates the normal build), except for the release
/// profile's whole-program optimisation: `lto = "fat"` with one codegen unit made this build
/// take 4 minutes on an idle 2-core machine and 16 under load, most of a fresh clone's test
/// run. What this file checks does not depend on it: static linking (no PT_INTERP), the
/// resolver inside `scratch`, the user, the stop; and without LTO the binary is larger, so
/// the image-size limit still holds for the shipped one.
fn static_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let target = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
        let target_dir = Path::new(ROOT).join("target").join("static");
        let started = Instant::now();
        let out = Command::new(env!("CARGO"))
            .current_dir(ROOT)
            .args(["build", "--release", "--locked", "--target", &target])
            .arg("--target-dir")
            .arg(&target_dir)
            .env("RUSTFLAGS", STATIC_RUSTFLAGS)
            .env("CARGO_PROFILE_RELEASE_LTO", "off")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
            // These would override RUSTFLAGS or the target directory.
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET_DIR")
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "static build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "static release build (crt-static, {target}): {:.1}s",
            started.elapsed().as_secs_f64()
        );
        let bin = target_dir
            .join(&target)
            .join("release")
            .join("tikv-health-exporter");
        let bytes = std::fs::read(&bin).unwrap();
        assert!(
            !has_program_interpreter(&bytes),
            "{} is dynamically linked (it has a PT_INTERP program header)",
            bin.display()
        );
        bin
    })
}

/// Whether a 64-bit little-endian ELF file asks for a dynamic loader (a PT_INTERP header).
fn has_program_interpreter(elf: &[u8]) -> bool {
    assert!(
        elf.starts_with(b"\x7fELF") && elf[4] == 2 && elf[5] == 1,
        "not a 64-bit little-endian ELF file"
    );
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let h = phoff + i * phentsize;
        u32::from_le_bytes(elf[h..h + 4].try_into().unwrap()) == 3
    })
}

/// The stage of `dockerfile` named `runtime`: from its FROM line to the next FROM or the end.
fn runtime_stage(dockerfile: &str) -> &str {
    let (mut offset, mut start, mut end) = (0, None, dockerfile.len());
    for line in dockerfile.split_inclusive('\n') {
        let l = line.trim().to_ascii_lowercase();
        if l.starts_with("from ") {
            if start.is_some() {
                end = offset;
                break;
            }
            if l.ends_with(" as runtime") {
                start = Some(offset);
            }
        }
        offset += line.len();
    }
    let start = start.expect("the Dockerfile has no `FROM ... AS runtime` stage");
    &dockerfile[start..end]
}

/// The source paths of the stage's `COPY --from=builder` instructions (any other COPY is an
/// error: the runtime stage takes everything from the builder).
fn copied_from_builder(stage: &str) -> Vec<String> {
    let mut sources = Vec::new();
    for line in stage.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if !words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("copy"))
        {
            continue;
        }
        let from = words.iter().find_map(|w| w.strip_prefix("--from="));
        assert_eq!(
            from,
            Some("builder"),
            "runtime stage: `{line}` does not copy from the builder stage"
        );
        let args: Vec<&str> = words[1..]
            .iter()
            .copied()
            .filter(|w| !w.starts_with("--"))
            .collect();
        sources.extend(args[..args.len() - 1].iter().map(|s| s.to_string()));
    }
    sources
}

/// The repository Dockerfile's `runtime` stage, verbatim, built on a stand-in `builder` stage
/// that holds what the real one leaves behind (the static binary, the CA bundle, /out/state).
fn exporter_image() -> Image {
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    // The stand-in must hold what the real builder would have built.
    for needle in [
        format!("RUSTFLAGS=\"{STATIC_RUSTFLAGS}\""),
        "cargo build --release --locked --target".to_owned(),
    ] {
        assert!(
            dockerfile.contains(&needle),
            "the Dockerfile's builder no longer runs `{needle}`: keep tests/container.rs's static build the same"
        );
    }
    let runtime = runtime_stage(&dockerfile);
    assert!(
        runtime.to_ascii_lowercase().starts_with("from scratch "),
        "the runtime stage must be FROM scratch:\n{runtime}"
    );
    let ctx = tempfile::tempdir().unwrap();
    let root = ctx.path().join("builder");
    for src in copied_from_builder(runtime) {
        let dest = root.join(src.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        match src.trim_end_matches('/') {
            "/out/tikv-health-exporter" => {
                std::fs::copy(static_binary(), &dest).unwrap();
            }
            "/etc/ssl/certs/ca-certificates.crt" => {
                std::fs::copy(&src, &dest).unwrap_or_else(|e| {
                    panic!("{src}: {e} (Debian's ca-certificates package provides it)")
                });
            }
            "/out/state" => std::fs::create_dir_all(&dest).unwrap(),
            other => panic!(
                "the runtime stage copies `{other}` from the builder: teach exporter_image() in tests/container.rs what the builder puts there"
            ),
        }
    }
    let tag = unique("exporter");
    let text = format!(
        "# Stand-in for the builder stage: only what it leaves behind.\n\
         FROM scratch AS builder\n\
         LABEL {TEST_LABEL}={tag}\n\
         COPY builder/ /\n\n\
         # The repository Dockerfile's runtime stage, verbatim:\n\
         {runtime}"
    );
    std::fs::write(ctx.path().join("Dockerfile"), text).unwrap();
    build_image(tag, ctx.path())
}

/// `pd-forward LISTEN TARGET`: relays each TCP connection on LISTEN to TARGET. Used as the `pd`
/// container, in front of the fake PD on the host.
const FORWARDER_RS: &str = r#"
use std::io::copy;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listener = TcpListener::bind(&args[1]).expect("bind");
    for client in listener.incoming().flatten() {
        let target = args[2].clone();
        thread::spawn(move || {
            let Ok(upstream) = TcpStream::connect(&target) else { return };
            let (mut from_client, mut to_upstream) =
                (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            let up = thread::spawn(move || {
                let _ = copy(&mut from_client, &mut to_upstream);
                let _ = to_upstream.shutdown(Shutdown::Write);
            });
            let (mut from_upstream, mut to_client) = (upstream, client);
            let _ = copy(&mut from_upstream, &mut to_client);
            let _ = to_client.shutdown(Shutdown::Write);
            let _ = up.join();
        });
    }
}
"#;

/// A FROM scratch image of [`FORWARDER_RS`], compiled statically with this toolchain's rustc.
fn forwarder_image() -> Image {
    let ctx = tempfile::tempdir().unwrap();
    let src = ctx.path().join("pd-forward.rs");
    std::fs::write(&src, FORWARDER_RS).unwrap();
    let sibling = Path::new(env!("CARGO")).with_file_name("rustc");
    let rustc = if sibling.exists() {
        sibling
    } else {
        PathBuf::from("rustc")
    };
    let out = Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "-C",
            "opt-level=1",
            "-C",
            "strip=symbols",
        ])
        .args(["-C", STATIC_RUSTFLAGS.trim_start_matches("-C ")])
        .arg("-o")
        .arg(ctx.path().join("pd-forward"))
        .arg(&src)
        .output()
        .expect("run rustc");
    assert!(
        out.status.success(),
        "compiling the forwarder failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY pd-forward /pd-forward\nUSER 65534:65534\nENTRYPOINT [\"/pd-forward\"]\n",
    )
    .unwrap();
    build_image(unique("forwarder"), ctx.path())
}

// ---------------------------------------------------------------------------------------------
// The image

/// The image from the Dockerfile's runtime stage: small, non-root, reaches PD by a container name
/// (Docker's DNS), serves /metrics through a published port, and exits 0 on `docker stop`.
#[test]
fn scratch_image_runs_as_nobody_reaches_pd_by_container_name_and_stops_cleanly() {
    let image = exporter_image();
    let size: u64 = docker_ok(&["image", "inspect", "-f", "{{.Size}}", &image.tag])
        .parse()
        .unwrap();
    eprintln!(
        "image size: {:.1} MB ({size} bytes); limit {} MB",
        size as f64 / 1e6,
        MAX_IMAGE_BYTES / 1_000_000
    );
    assert!(size < MAX_IMAGE_BYTES, "image is {size} bytes");
    let config: Value = serde_json::from_str(&docker_ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config}}",
        &image.tag,
    ]))
    .unwrap();
    assert_eq!(config["User"], "65534:65534", "{config}");
    // OCI annotations: the crate's version and license, the revision from the build argument
    // (none here: "unknown").
    let labels = &config["Labels"];
    for (key, want) in [
        (
            "org.opencontainers.image.version",
            env!("CARGO_PKG_VERSION"),
        ),
        (
            "org.opencontainers.image.licenses",
            env!("CARGO_PKG_LICENSE"),
        ),
        (
            "org.opencontainers.image.source",
            env!("CARGO_PKG_REPOSITORY"),
        ),
        ("org.opencontainers.image.title", "tikv-health-exporter"),
        ("org.opencontainers.image.revision", "unknown"),
    ] {
        assert_eq!(labels[key], want, "{key} in {labels}");
    }
    assert_eq!(config["Entrypoint"], json!(["/tikv-health-exporter"]));
    assert!(
        config["ExposedPorts"].get("19180/tcp").is_some(),
        "{config}"
    );

    let net = network();
    let pd = FakePd::with_stores_on(SocketAddr::new(net.gateway, 0), &cluster(3));
    let forwarder = forwarder_image();
    let pd_addr = pd.addr().to_string();
    let _pd = run(
        "pd",
        &[
            "--network",
            &net.name,
            "--network-alias",
            "pd",
            &forwarder.tag,
            "0.0.0.0:2379",
            &pd_addr,
        ],
    );
    // No --user: the image's USER must make it non-root by itself.
    let exporter = run(
        "exporter",
        &[
            "--network",
            &net.name,
            "-p",
            "127.0.0.1::19180",
            &image.tag,
            "--pd.endpoints",
            "http://pd:2379",
            "--state-file",
            STATE_FILE,
        ],
    );
    let addr = exporter.published(19180);
    let metrics = exporter.wait_metrics(addr, |m| {
        sample(m, "tikv_health_exporter_source_up", &[("source", "pd")]) == Some(1.0)
    });
    assert!(pd.requests_to("/pd/api/v1/stores") >= 1);
    for store in ["1", "2", "3"] {
        assert_eq!(
            sample(&metrics, "tikv_store_leaders", &[("store", store)]),
            Some(17.0),
            "store {store} from the fake PD:\n{metrics}"
        );
    }

    // The process runs as nobody: uid and gid 65534.
    let top = docker_ok(&["top", &exporter.name, "-o", "pid,uid,gid,comm"]);
    let rows: Vec<Vec<&str>> = top
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(!rows.is_empty(), "docker top: {top}");
    for row in &rows {
        assert_eq!(row[1..3], ["65534", "65534"], "docker top:\n{top}");
    }

    // SIGTERM: it finishes, writes the state file (the directory belongs to 65534) and exits
    // 0 within docker's default grace period (10 s; a SIGKILL after it would exit 137). How
    // long the engine then takes to tear the container down is no property of the image.
    let started = Instant::now();
    docker_ok(&["stop", "-t", "10", &exporter.name]);
    eprintln!("docker stop took {:.2}s", started.elapsed().as_secs_f64());
    let logs = exporter.logs();
    assert_eq!(exporter.state("ExitCode"), "0", "logs:\n{logs}");
    assert_eq!(exporter.state("OOMKilled"), "false", "logs:\n{logs}");
    assert!(
        logs.contains("shutting down"),
        "not the SIGTERM path:\n{logs}"
    );
    let out = tempfile::tempdir().unwrap();
    let copied = out.path().join("state.json");
    docker_ok(&[
        "cp",
        &format!("{}:{STATE_FILE}", exporter.name),
        copied.to_str().unwrap(),
    ]);
    let state: Value = serde_json::from_slice(&std::fs::read(&copied).unwrap()).unwrap();
    assert_eq!(state["version"], 1, "{state}");
}

/// Names from /etc/hosts (`--add-host`, compose `extra_hosts`) resolve too, in the same static
/// binary in the same empty image: here the exporter reaches the fake PD on the host directly.
#[test]
fn scratch_image_resolves_names_from_etc_hosts() {
    let image = exporter_image();
    let net = network();
    let pd = FakePd::with_stores_on(SocketAddr::new(net.gateway, 0), &cluster(1));
    let add_host = format!("fake-pd.test:{}", net.gateway);
    let endpoint = format!("http://fake-pd.test:{}", pd.addr().port());
    let exporter = run(
        "exporter",
        &[
            "--network",
            &net.name,
            "--add-host",
            &add_host,
            "-p",
            "127.0.0.1::19180",
            &image.tag,
            "--pd.endpoints",
            &endpoint,
        ],
    );
    let addr = exporter.published(19180);
    exporter.wait_metrics(addr, |m| {
        sample(m, "tikv_health_exporter_source_up", &[("source", "pd")]) == Some(1.0)
    });
    assert!(pd.requests_to("/pd/api/v1/stores") >= 1);
}

// ---------------------------------------------------------------------------------------------
// docker-compose.yml and its Prometheus configuration

/// `docker-compose -f docker-compose.yml config [ARGS]` in the repository, with `DOCKER_GID` set
/// (or removed).
fn compose_config(docker_gid: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new("docker-compose");
    cmd.current_dir(ROOT)
        .args(["-f", "docker-compose.yml", "config"])
        .args(args);
    match docker_gid {
        Some(g) => cmd.env("DOCKER_GID", g),
        None => cmd.env_remove("DOCKER_GID"),
    };
    cmd.output()
        .expect("cannot run `docker-compose` (Debian's docker-compose package)")
}

/// The resolved compose configuration as JSON.
fn compose_document() -> Value {
    let out = compose_config(Some("999"), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_saphyr::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap()
}

#[test]
fn compose_file_is_valid_and_every_mounted_host_path_exists() {
    let out = compose_config(Some("999"), &["-q"]);
    assert!(
        out.status.success(),
        "docker-compose config -q: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the Docker socket's group the exporter could not read container logs: refuse.
    let out = compose_config(None, &["-q"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DOCKER_GID"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let doc = compose_document();
    let services = doc["services"].as_object().expect("services");
    let mut binds = Vec::new();
    for (name, service) in services {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            // Short syntax `SOURCE:TARGET[:MODE]` (docker-compose 1.x) or the long form.
            let source = match volume {
                Value::String(s) => s.split(':').next(),
                Value::Object(v) if v["type"] == "bind" => v["source"].as_str(),
                _ => None,
            };
            if let Some(source) = source.filter(|s| s.starts_with('/')) {
                binds.push((name.clone(), source.to_owned()));
            }
        }
        if let Some(context) = service["build"]["context"].as_str() {
            assert!(
                Path::new(context).join("Dockerfile").is_file(),
                "{name}: no Dockerfile in {context}"
            );
        }
    }
    let mut checked = 0;
    for (service, source) in &binds {
        if source == "/var/run/docker.sock" {
            continue;
        }
        assert!(
            source.starts_with(ROOT),
            "{service} mounts {source}, outside the repository"
        );
        assert!(
            Path::new(source).exists(),
            "{service} mounts {source}, which does not exist"
        );
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} repository mounts: {binds:?}");
}

#[test]
fn prometheus_config_is_valid_scrapes_the_stack_and_loads_the_alert_rules() {
    let out = Command::new("promtool")
        .current_dir(ROOT)
        .args(["check", "config", "--syntax-only", "deploy/prometheus.yml"])
        .output()
        .expect(
            "cannot run promtool (Debian's prometheus package; scripts/test-all.sh installs it)",
        );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(Path::new(ROOT).join("deploy/prometheus.yml")).unwrap();
    let prom: Value = serde_saphyr::from_str(&text).unwrap();

    // The rule globs, inside the container, must select rule files of ./alerts (mounted at
    // /etc/prometheus/rules) and nothing else that lives there.
    let doc = compose_document();
    let alerts = Path::new(ROOT).join("alerts");
    let mount = format!("{}:/etc/prometheus/rules:ro", alerts.display());
    assert!(
        doc["services"]["prometheus"]["volumes"]
            .as_array()
            .unwrap()
            .contains(&json!(mount)),
        "prometheus must mount ./alerts at /etc/prometheus/rules"
    );
    let mut rule_files = Vec::new();
    for pattern in prom["rule_files"].as_array().unwrap() {
        let suffix = pattern
            .as_str()
            .unwrap()
            .strip_prefix("/etc/prometheus/rules/*")
            .expect("rule_files: /etc/prometheus/rules/*<suffix>");
        for entry in std::fs::read_dir(&alerts).unwrap() {
            let path = entry.unwrap().path();
            if path.to_str().unwrap().ends_with(suffix) {
                rule_files.push(path);
            }
        }
    }
    assert!(
        !rule_files.is_empty(),
        "rule_files select nothing in alerts/"
    );
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .args(&rule_files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Scrape targets: the TiKV ones are exactly the advertised status addresses (the exporter
    // maps samples to stores by `instance`), and the exporter and PD are services of the stack.
    let targets = |job: &str| -> Vec<String> {
        let config = prom["scrape_configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["job_name"] == job)
            .unwrap_or_else(|| panic!("no scrape job {job}"));
        config["static_configs"][0]["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect()
    };
    let services = doc["services"].as_object().unwrap();
    let mut advertised: Vec<String> = services
        .values()
        .flat_map(|s| s["command"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| {
            a.as_str()?
                .strip_prefix("--advertise-status-addr=")
                .map(str::to_owned)
        })
        .collect();
    advertised.sort();
    assert_eq!(advertised.len(), 3);
    assert_eq!(targets("tikv"), advertised);
    assert_eq!(targets("pd"), ["pd:2379"]);
    assert!(services.contains_key("pd"));
    assert_eq!(
        targets("tikv-health-exporter"),
        ["tikv-health-exporter:19180"]
    );
    assert!(services.contains_key("tikv-health-exporter"));
}
