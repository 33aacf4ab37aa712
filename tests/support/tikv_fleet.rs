//! Many TiKV instances behind one scrape target, for measuring at cluster scale without a
//! thousand listeners: each scrape fetches one [`FakeTikv`]'s exposition and repeats every
//! sample once per instance with an `instance` label of its own (family by family, each
//! family's `# HELP`/`# TYPE` once). Prometheus keeps those labels with `honor_labels: true`,
//! as TidbMonitor's jobs have it (cluster-signals.md §10.2), so the series look as a thousand
//! TiKVs' would, mapped to PD stores by `instance` = status address.

use std::fmt::Write as _;

use super::exporter::http_get;
use super::fake_tikv::FakeTikv;
use super::http::{Response, TestServer};

/// One target serving the samples of `instances` TiKVs, all copies of `tikv`'s.
pub struct TikvFleet {
    server: TestServer,
}

impl TikvFleet {
    /// Serves `/metrics` with `tikv`'s samples for every name in `instances`.
    pub fn start(tikv: &FakeTikv, instances: Vec<String>) -> TikvFleet {
        let source = tikv.addr();
        let server = TestServer::start(move |req| {
            if req.path_only() != "/metrics" {
                return Response::text(404, "not found\n");
            }
            match http_get(source, "/metrics") {
                Some((200, _, body)) => Response::text(200, replicate(&body, &instances)),
                other => Response::text(502, format!("fake TiKV: {other:?}\n")),
            }
        });
        TikvFleet { server }
    }

    /// The scrape target, `127.0.0.1:PORT`.
    pub fn target(&self) -> String {
        self.server.addr().to_string()
    }
}

/// `exposition` (text format 0.0.4) with every sample repeated for each of `instances`,
/// labelled `instance="<name>"`.
pub fn replicate(exposition: &str, instances: &[String]) -> String {
    let mut families: Vec<(Vec<&str>, Vec<&str>)> = Vec::new();
    for line in exposition.lines().filter(|l| !l.is_empty()) {
        let header = line.starts_with('#');
        let new_family = match families.last() {
            None => true,
            Some((_, samples)) => header && !samples.is_empty(),
        };
        if new_family {
            families.push((Vec::new(), Vec::new()));
        }
        let (headers, samples) = families.last_mut().unwrap();
        if header {
            headers.push(line);
        } else {
            samples.push(line);
        }
    }
    let mut out = String::with_capacity(exposition.len() * instances.len());
    for (headers, samples) in &families {
        for h in headers {
            out.push_str(h);
            out.push('\n');
        }
        for instance in instances {
            for s in samples {
                match s.split_once('{') {
                    Some((name, rest)) if rest.starts_with('}') => {
                        let _ = writeln!(out, "{name}{{instance=\"{instance}\"{rest}");
                    }
                    Some((name, rest)) => {
                        let _ = writeln!(out, "{name}{{instance=\"{instance}\",{rest}");
                    }
                    None => {
                        let (name, value) = s.split_once(' ').unwrap_or((s, ""));
                        let _ = writeln!(out, "{name}{{instance=\"{instance}\"}} {value}");
                    }
                }
            }
        }
    }
    out
}
