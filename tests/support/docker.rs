//! Helpers for tests against the real Docker engine: a tiny busybox image built here (no
//! registry), containers removed on drop (even on panic), the engine's own record of what a
//! container wrote (`docker logs`) turned into expected counts by the exporter's file-path
//! parser, and a unix-socket proxy to cut the exporter off from the engine and back.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::wait;

/// The engine's socket.
pub const ENGINE_SOCKET: &str = "/var/run/docker.sock";

/// What the test image's entrypoint does (environment variables, all optional):
/// `FIXTURE=1` writes the real TiKV/PD lines to stderr; `N` numbered `became leader` lines
/// (region ids 1..N, tagged `TAG`) in bursts of `BATCH` with `PAUSE` seconds between them,
/// every `OUT_EVERY`-th one to stdout instead; `FLOOD` copies of `FLOOD_LINE` as fast as
/// possible; then it waits for SIGTERM. Every start of the container does all of it again.
const GEN_SCRIPT: &str = r#"trap 'exit 0' TERM INT
if [ -n "$FIXTURE" ]; then cat /fixture.log >&2; fi
if [ -n "$N" ]; then
  awk -v n="$N" -v b="${BATCH:-50}" -v p="${PAUSE:-0.02}" -v tag="${TAG:-x}" -v out="${OUT_EVERY:-0}" 'BEGIN {
    for (i = 1; i <= n; i++) {
      line = sprintf("[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] [\"became leader at term 6\"] [term=6] [raft_id=45] [region_id=%d] [tag=%s]", i, tag)
      if (out > 0 && i % out == 0) print line; else print line > "/dev/stderr"
      if (i % b == 0) system("sleep " p)
    }
  }'
fi
if [ -n "$FLOOD" ]; then yes "$FLOOD_LINE" | head -n "$FLOOD" >&2; fi
sleep 2147483647 &
wait $!
"#;

/// Busybox applets linked in the image.
const APPLETS: [&str; 12] = [
    "sh", "cat", "sleep", "seq", "printf", "awk", "yes", "head", "echo", "wc", "true", "ls",
];

/// A `became leader` line as TiKV writes it.
pub fn leader_line(region: u64, extra: &str) -> String {
    format!(
        "[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] [\"became leader at term 6\"] [term=6] [raft_id=45] [region_id={region}]{extra}"
    )
}

/// Runs `docker args`; panics with its stderr unless it succeeds.
pub fn docker(args: &[&str]) -> Output {
    let out = try_docker(args);
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `docker args`.
pub fn try_docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the docker CLI")
}

/// Panics with a clear message when the engine cannot be used.
pub fn require_engine() {
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "these tests need the Docker engine at {ENGINE_SOCKET}: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("these tests need the docker CLI and engine: {e}"),
    }
}

/// A name no other test (or test run) uses: `thx-<what>-<pid>-<n>-<ms>`.
pub fn unique(what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 100_000_000;
    format!(
        "thx-{what}-{}-{}-{ms}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn busybox() -> PathBuf {
    let find = || {
        ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    };
    if let Some(p) = find() {
        return p;
    }
    // Debian's statically linked busybox runs in an image with nothing else in it.
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-qq", "busybox-static"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    if find().is_none() {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "busybox-static"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    find().expect("busybox-static is needed (apt-get install busybox-static)")
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tikv-pd-real-lines.log")
}

/// The test image `tikv-health-exporter-test/busybox:<content hash>`, built once (reused when
/// present): busybox and its applets, the fixture at /fixture.log and the generator script.
pub fn image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            require_engine();
            let bb = std::fs::read(busybox()).unwrap();
            let fx = std::fs::read(fixture()).unwrap();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&bb, &fx, GEN_SCRIPT, APPLETS, 1u32).hash(&mut h);
            let tag = format!("tikv-health-exporter-test/busybox:{:016x}", h.finish());
            if try_docker(&["image", "inspect", &tag]).status.success() {
                return tag;
            }
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("rootfs");
            std::fs::create_dir_all(root.join("bin")).unwrap();
            std::fs::write(root.join("bin/busybox"), &bb).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                root.join("bin/busybox"),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
            for a in APPLETS {
                std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
            }
            std::fs::write(root.join("fixture.log"), &fx).unwrap();
            std::fs::write(root.join("gen.sh"), GEN_SCRIPT).unwrap();
            let tar = dir.path().join("rootfs.tar");
            let st = Command::new("tar")
                .arg("-C")
                .arg(&root)
                .arg("-cf")
                .arg(&tar)
                .arg(".")
                .status()
                .unwrap();
            assert!(st.success(), "tar the test rootfs");
            docker(&[
                "import",
                "-c",
                r#"ENTRYPOINT ["/bin/sh", "/gen.sh"]"#,
                "-c",
                "ENV PATH=/bin",
                tar.to_str().unwrap(),
                &tag,
            ]);
            let out = docker(&[
                "run",
                "--rm",
                "--entrypoint",
                "/bin/sh",
                &tag,
                "-c",
                "echo ok",
            ]);
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                "ok",
                "the busybox in the test image must be statically linked (busybox-static)"
            );
            tag
        })
        .clone()
}

/// A container of the test image, force-removed (with its volumes) on drop.
pub struct Container {
    /// Its name.
    pub name: String,
    /// `docker run` options it was created with (for re-creation).
    opts: Vec<String>,
}

impl Container {
    /// `docker run -d --name <name> <opts> <image>` (options such as `-e N=100`, `-t`).
    pub fn run(name: &str, opts: &[&str]) -> Container {
        let c = Container {
            name: name.to_owned(),
            opts: opts.iter().map(|s| s.to_string()).collect(),
        };
        c.create();
        c
    }

    fn create(&self) {
        let image = image();
        let mut args = vec!["run", "-d", "--name", &self.name];
        args.extend(self.opts.iter().map(String::as_str));
        args.push(&image);
        docker(&args);
    }

    /// Removes the container and creates a new one with the same name and options.
    pub fn recreate(&self) {
        docker(&["rm", "-f", "-v", &self.name]);
        self.create();
    }

    /// Container id.
    pub fn id(&self) -> String {
        let out = docker(&["inspect", "--format", "{{.Id}}", &self.name]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `docker restart -t 5`.
    pub fn restart(&self) {
        docker(&["restart", "-t", "5", &self.name]);
    }

    /// `docker stop -t 5`.
    pub fn stop(&self) {
        docker(&["stop", "-t", "5", &self.name]);
    }

    /// `docker start`.
    pub fn start(&self) {
        docker(&["start", &self.name]);
    }

    /// Runs a shell script inside the container whose output goes to the container's own
    /// stderr (PID 1's), i.e. into its log.
    pub fn write(&self, script: &str) {
        let wrapped = format!("exec 1>/proc/1/fd/1 2>/proc/1/fd/2\n{script}");
        docker(&["exec", &self.name, "sh", "-c", &wrapped]);
    }

    /// Writes `n` numbered `became leader` lines (region ids `first..first+n`) to stderr.
    pub fn write_leader_lines(&self, first: u64, n: u64, tag: &str) {
        self.write(&format!(
            r#"awk -v f={first} -v n={n} 'BEGIN {{ for (i = f; i < f + n; i++) printf "[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] [\"became leader at term 6\"] [term=6] [raft_id=45] [region_id=%d] [tag={tag}]\n", i }}' >&2"#
        ));
    }

    /// Everything the engine recorded for the container (stdout then stderr; a TTY
    /// container's output is all on stdout).
    pub fn logs(&self) -> Vec<u8> {
        let out = docker(&["logs", &self.name]);
        let mut all = out.stdout;
        all.extend_from_slice(&out.stderr);
        all
    }

    /// Number of lines the engine recorded.
    pub fn logged_lines(&self) -> usize {
        self.logs().iter().filter(|&&b| b == b'\n').count()
    }

    /// Seconds between the engine's timestamps of the first and the last logged line.
    pub fn logged_span_secs(&self) -> f64 {
        let ts = |script: String| {
            let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let stamp = text
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            chrono::DateTime::parse_from_rfc3339(&stamp)
                .unwrap_or_else(|e| panic!("docker logs timestamp `{stamp}`: {e}"))
        };
        let first = ts(format!(
            "docker logs --timestamps {} 2>&1 | head -n 1",
            self.name
        ));
        let last = ts(format!(
            "docker logs --timestamps --tail 1 {} 2>&1",
            self.name
        ));
        (last - first).num_microseconds().unwrap_or(0) as f64 / 1e6
    }

    /// Waits (bounded) until the engine recorded at least `n` lines.
    pub fn wait_logged(&self, n: usize, timeout: Duration) {
        wait::until(
            &format!("{}: {n} lines logged", self.name),
            timeout,
            || match self.logged_lines() {
                have if have >= n => Ok(()),
                have => Err(format!("{have} lines")),
            },
        )
    }

    /// Waits (bounded) until the engine recorded all `lines` lines of the latest start of a
    /// `FIXTURE=1` container (every start writes the fixture first, then its other lines):
    /// counted from the last copy of the fixture's first line. A positive marker of a finished
    /// run, where waiting for the log to go quiet would stop early whenever a loaded machine
    /// pauses the writer.
    pub fn wait_run_complete(&self, lines: usize, timeout: Duration) {
        let fixture = std::fs::read(fixture()).unwrap();
        let first_line = &fixture[..=fixture.iter().position(|&b| b == b'\n').unwrap()];
        let fixture_lines = fixture.iter().filter(|&&b| b == b'\n').count();
        wait::until(
            &format!("{}: a complete run of {lines} lines logged", self.name),
            timeout,
            || {
                let log = self.logs();
                let start = log
                    .windows(first_line.len())
                    .rposition(|w| w == first_line)
                    .ok_or_else(|| "no run started yet".to_owned())?;
                let have = log[start..].iter().filter(|&&b| b == b'\n').count();
                // At a kill, the engine may write the old run's cut last line after the new
                // run's first lines: one line more than a run, never two.
                assert!(
                    have <= lines + 1,
                    "{}: {have} lines in one run of {lines}",
                    self.name
                );
                // Complete once its last numbered line is in (the run writes it last).
                let numbered = lines - fixture_lines;
                let last = format!("[region_id={numbered}] [tag=");
                let done = numbered == 0
                    || log[start..]
                        .windows(last.len())
                        .any(|w| w == last.as_bytes());
                if have >= lines && done {
                    Ok(())
                } else {
                    Err(format!("{have} lines of the latest run"))
                }
            },
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = try_docker(&["rm", "-f", "-v", &self.name]);
    }
}

/// Counts of one log source, as the exporter exports them or as expected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Well-formed lines by level name (`INFO`, ...), zeros omitted.
    pub levels: BTreeMap<String, u64>,
    /// Malformed lines.
    pub malformed: u64,
    /// Leadership events by name, zeros omitted.
    pub events: BTreeMap<String, u64>,
}

impl Counts {
    /// All lines, well-formed or not.
    pub fn lines(&self) -> u64 {
        self.levels.values().sum::<u64>() + self.malformed
    }

    /// Adds another count.
    pub fn add(&mut self, o: &Counts) {
        for (k, v) in &o.levels {
            *self.levels.entry(k.clone()).or_default() += v;
        }
        self.malformed += o.malformed;
        for (k, v) in &o.events {
            *self.events.entry(k.clone()).or_default() += v;
        }
    }

    /// Events of one kind.
    pub fn event(&self, name: &str) -> u64 {
        self.events.get(name).copied().unwrap_or(0)
    }
}

/// What the exporter's file-path parser makes of `log` (lines longer than `max_line` are
/// malformed): the counts the Docker source must reproduce.
pub fn expected(log: &[u8], max_line: usize) -> Counts {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("expected.log");
    std::fs::write(&path, log).unwrap();
    let bin = super::exporter::binary();
    let max = max_line.to_string();
    let out = Command::new(&bin)
        .args(["logs", "parse", "--max-line-bytes", &max])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = Counts::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        match v["level"].as_str() {
            Some(level) => *c.levels.entry(level.to_owned()).or_default() += 1,
            None => c.malformed += 1,
        }
    }
    let out = Command::new(&bin)
        .args(["logs", "leadership", "--summary", "--max-line-bytes", &max])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["malformed"].as_u64(), Some(c.malformed));
    for (k, n) in v["events"].as_object().unwrap() {
        let n = n.as_u64().unwrap();
        if n > 0 {
            c.events.insert(k.clone(), n);
        }
    }
    c
}

/// The newest TiKV/PD line time in `log` (Unix seconds), as the file-path parser reads it.
pub fn newest_line_time(log: &[u8]) -> Option<f64> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("times.log");
    std::fs::write(&path, log).unwrap();
    let out = Command::new(super::exporter::binary())
        .args(["logs", "parse"])
        .arg(&path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let t = chrono::DateTime::parse_from_rfc3339(v["time"].as_str()?).ok()?;
            Some(t.timestamp_millis() as f64 / 1000.0)
        })
        .reduce(f64::max)
}

/// The counts the exporter exports for `source` (`docker:<name>`), and its `store` label.
pub fn exported(metrics: &str, source: &str) -> (Counts, Option<String>) {
    let mut c = Counts::default();
    let mut store = None;
    for (name, labels, value) in super::exporter::samples(metrics) {
        let get = |k: &str| labels.iter().find(|(l, _)| l == k).map(|(_, v)| v.as_str());
        if get("source") != Some(source) {
            continue;
        }
        let v = value as u64;
        match name.as_str() {
            "tikv_log_lines_total" => {
                store = get("store").map(str::to_owned);
                if v > 0 {
                    c.levels.insert(get("level").unwrap().to_owned(), v);
                }
            }
            "tikv_log_malformed_lines_total" => c.malformed = v,
            "tikv_leadership_changes_total" if v > 0 => {
                c.events.insert(get("event").unwrap().to_owned(), v);
            }
            _ => {}
        }
    }
    (c, store)
}

/// A unix socket at a path of the test's choosing that forwards every connection to the
/// engine; [`EngineProxy::stop`] closes it and every connection through it (the exporter sees
/// the engine go away), [`EngineProxy::start`] brings it back.
pub struct EngineProxy {
    path: PathBuf,
    running: Option<ProxyRun>,
}

struct ProxyRun {
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<UnixStream>>>,
    accept: JoinHandle<()>,
}

impl EngineProxy {
    /// A proxy listening at `path` (started).
    pub fn start_at(path: &Path) -> EngineProxy {
        let mut p = EngineProxy {
            path: path.to_owned(),
            running: None,
        };
        p.start();
        p
    }

    /// `unix://<path>`, for `--logs.docker.host`.
    pub fn url(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Listens again (no-op when running).
    pub fn start(&mut self) {
        if self.running.is_some() {
            return;
        }
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let (s, c) = (stop.clone(), conns.clone());
        let accept = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let Ok(engine) = UnixStream::connect(ENGINE_SOCKET) else {
                            continue;
                        };
                        let _ = client.set_nonblocking(false);
                        let mut list = c.lock().unwrap();
                        list.push(client.try_clone().unwrap());
                        list.push(engine.try_clone().unwrap());
                        drop(list);
                        pipe(client.try_clone().unwrap(), engine.try_clone().unwrap());
                        pipe(engine, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        self.running = Some(ProxyRun {
            stop,
            conns,
            accept,
        });
    }

    /// Stops listening, removes the socket file and cuts every open connection.
    pub fn stop(&mut self) {
        let Some(r) = self.running.take() else {
            return;
        };
        r.stop.store(true, Ordering::Relaxed);
        let _ = r.accept.join();
        let _ = std::fs::remove_file(&self.path);
        for s in r.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Copies `from` to `to` on a thread until either side closes.
fn pipe(mut from: UnixStream, mut to: UnixStream) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

/// Peak resident set size (VmHWM) of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}
