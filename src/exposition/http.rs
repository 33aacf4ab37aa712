//! The HTTP endpoints: `/metrics` (the text format 0.0.4 or OpenMetrics, as negotiated, gzip
//! when accepted: [`super::format`]), a landing page, `/-/healthy`, `/-/ready`,
//! `/api/v1/invariants`, `/api/v1/stores`, `/api/v1/cluster` and `/api/v1/leadership`: every
//! one reads the published snapshot. `/api/v1/hot-regions` alone asks PD, at most once per
//! type and poll ([`super::hot_regions`]). The accept loop is [`crate::http_server`].

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue,
    VARY,
};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use super::View;
use super::api;
use super::cache::CachedMetrics;
use super::format::{self, Encoding};
use super::hot_regions::{self, HotRegionsCache};
use crate::http_server::Handler;
use crate::invariants::engine::Phase;

/// What the handlers need.
pub struct Endpoints {
    /// What is exposed.
    pub view: Arc<View>,
    /// `/metrics`, its snapshot part cached per poll.
    pub metrics: CachedMetrics,
    /// Path of the metrics endpoint.
    pub telemetry_path: String,
    /// Whether OpenMetrics is offered to scrapers that prefer it (`web.openmetrics`).
    pub openmetrics: bool,
    /// What `POST /-/reload` calls (`None`: no reload, 404).
    pub reload: Option<ReloadTrigger>,
    /// `/api/v1/hot-regions`: the PD client and the fetches of the current poll.
    pub hot_regions: Arc<HotRegionsCache>,
}

/// Reloads the configuration; `Err` carries why the new one was refused.
pub type ReloadTrigger =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(v: &impl Serialize) -> Resp {
    match serde_json::to_vec(v) {
        Ok(b) => respond(StatusCode::OK, "application/json", b),
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            e.to_string(),
        ),
    }
}

/// Every value of header `name`, joined by commas as RFC 9110 allows (`None`: absent).
fn header_list(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
    let first = values.next()?;
    Some(values.fold(first.to_owned(), |mut all, v| {
        all.push(',');
        all.push_str(v);
        all
    }))
}

/// `/metrics` in the negotiated format and coding; the answer varies with both headers.
fn metrics_reply(state: &Endpoints, headers: &HeaderMap) -> Resp {
    let format = format::negotiate(header_list(headers, ACCEPT).as_deref(), state.openmetrics);
    let mut r = match format::negotiate_encoding(header_list(headers, ACCEPT_ENCODING).as_deref()) {
        Encoding::Gzip => {
            let mut r = respond(
                StatusCode::OK,
                format.content_type(),
                state.metrics.gzipped(format),
            );
            r.headers_mut()
                .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        Encoding::Identity => respond(
            StatusCode::OK,
            format.content_type(),
            state.metrics.body(format),
        ),
    };
    r.headers_mut()
        .insert(VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    r
}

/// Routes one request.
pub fn handle(
    state: &Endpoints,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Resp {
    if method != Method::GET && method != Method::HEAD && path != "/-/reload" {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET and HEAD\n",
        );
    }
    if path == state.telemetry_path {
        return metrics_reply(state, headers);
    }
    match path {
        "/" => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            landing_page(state),
        ),
        "/-/healthy" => respond(StatusCode::OK, "text/plain; charset=utf-8", "Healthy\n"),
        "/-/reload" => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only POST or PUT\n",
        ),
        "/-/ready" if state.view.published.is_ready() => {
            respond(StatusCode::OK, "text/plain; charset=utf-8", "Ready\n")
        }
        "/-/ready" => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "Not ready: the first poll has not finished\n",
        ),
        "/api/v1/invariants" => json(&state.view.published.snapshot().invariants),
        "/api/v1/stores" => json(&api::stores(&state.view.published.snapshot())),
        "/api/v1/cluster" => json(&api::cluster(
            &state.view.published.snapshot(),
            crate::clock::unix_now(),
        )),
        "/api/v1/leadership" => match leadership_limit(query, state.view.history.capacity()) {
            Ok(limit) => json(&leadership(&state.view, limit)),
            Err(e) => json_error(StatusCode::BAD_REQUEST, &e),
        },
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n",
        ),
    }
}

/// The `limit` of `/api/v1/leadership?limit=N`: the whole history when absent; an integer from
/// 0 to the history's size (`logs.history_size`) otherwise, anything else (`-1`, `abc`, a
/// limit above the size, a repeated `limit`) is an error saying what is accepted.
fn leadership_limit(query: Option<&str>, max: usize) -> Result<usize, String> {
    let mut values = query
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.strip_prefix("limit="));
    let Some(raw) = values.next() else {
        return Ok(max);
    };
    if values.next().is_some() {
        return Err("limit is given more than once".into());
    }
    match raw.parse::<usize>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!(
            "limit must be an integer from 0 to {max} (logs.history_size), not `{raw}`"
        )),
    }
}

#[derive(Serialize)]
struct EventJson {
    source: String,
    store: String,
    time: Option<String>,
    #[serde(flatten)]
    event: crate::logs::events::LeadershipEvent,
    message: String,
}

fn leadership(view: &View, limit: usize) -> Vec<EventJson> {
    let all = view.history.recent();
    let skip = all.len().saturating_sub(limit);
    all.into_iter()
        .skip(skip)
        .map(|h| EventJson {
            source: h.source,
            store: h.store,
            time: h.time,
            event: h.event,
            message: h.message,
        })
        .collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn fmt_time(t: f64) -> String {
    chrono::DateTime::from_timestamp(t as i64, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn landing_page(state: &Endpoints) -> String {
    let snap = state.view.published.snapshot();
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>tikv-health-exporter</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}\
         .firing{{background:#f8d7da}}.pending{{background:#fff3cd}}.unknown{{background:#e2e3e5}}</style>\
         </head><body><h1>tikv-health-exporter</h1><p>Prometheus exporter and alert sidecar for TiKV. \
         Version {}.</p><ul><li><a href=\"{}\">Metrics</a></li><li><a href=\"/api/v1/invariants\">\
         Invariants (JSON)</a></li><li><a href=\"/api/v1/stores\">Stores (JSON)</a> · \
         <a href=\"/api/v1/cluster\">Cluster (JSON)</a> · Hot regions (JSON, from PD): \
         <a href=\"/api/v1/hot-regions?type=write\">write</a>, \
         <a href=\"/api/v1/hot-regions?type=read\">read</a></li>\
         <li><a href=\"/api/v1/leadership\">Recent leadership events (JSON)\
         </a></li><li><a href=\"/-/healthy\">Health</a> · <a href=\"/-/ready\">Readiness</a></li></ul>",
        esc(env!("CARGO_PKG_VERSION")),
        esc(&state.telemetry_path)
    );
    stores_table(&mut h, &snap);
    let _ = write!(
        h,
        "<h2>Invariants</h2><table><tr><th>name</th><th>store</th><th>severity</th><th>state</th>\
         <th>since</th><th>value</th><th>threshold</th><th>message</th></tr>"
    );
    if snap.invariants.is_empty() {
        h.push_str("<tr><td colspan=\"8\">no evaluation yet</td></tr>");
    }
    for i in &snap.invariants {
        let state = if i.unknown {
            format!("unknown ({})", i.state.as_str())
        } else {
            i.state.as_str().to_owned()
        };
        let class = if i.unknown {
            "unknown"
        } else {
            match i.state {
                Phase::Firing => "firing",
                Phase::Pending => "pending",
                Phase::Ok => "ok",
            }
        };
        let _ = write!(
            h,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{} {}</td><td>{}</td></tr>",
            esc(&i.name),
            esc(if i.store.is_empty() {
                "(cluster)"
            } else {
                &i.store
            }),
            i.severity.as_str(),
            esc(&state),
            i.since.map(fmt_time).unwrap_or_default(),
            i.value.map(|v| format!("{v:.4}")).unwrap_or_default(),
            esc(i.op.as_str()),
            i.threshold,
            esc(&i.message)
        );
    }
    h.push_str("</table>");
    let unmapped: Vec<_> = snap
        .unmapped
        .iter()
        .filter(|(_, u)| u.samples > 0)
        .collect();
    if !unmapped.is_empty() {
        h.push_str(
            "<h2>Unmapped samples</h2><p>These Prometheus samples map to no PD store (the \
             stores they should cover are unknown). Restrict the queries to this cluster with \
             <code>prometheus.selector</code>, or map them with \
             <code>prometheus.store_mapping</code> (label + regex).</p><table><tr>\
             <th>invariant</th><th>samples</th><th>example</th></tr>",
        );
        for (name, u) in unmapped {
            let _ = write!(
                h,
                "<tr class=\"unknown\"><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                esc(name),
                u.samples,
                esc(u.example.as_deref().unwrap_or(""))
            );
        }
        h.push_str("</table>");
    }
    let rejected: u64 = snap.rejected_stores.values().sum();
    if rejected > 0 {
        let _ = write!(
            h,
            "<p class=\"unknown\">PD's last <code>/stores</code> reply had {rejected} entries \
             that name no single store (ignored; see the exporter's log).</p>"
        );
    }
    h.push_str("<h2>Sources</h2><table><tr><th>source</th><th>up</th><th>last success</th><th>last error</th></tr>");
    for (name, s) in &snap.sources {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            s.up,
            s.last_success.map(fmt_time).unwrap_or_default(),
            esc(s.last_error.as_deref().unwrap_or(""))
        );
    }
    for s in state.view.logs.list() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td></td><td></td></tr>",
            esc(&s.source),
            s.is_up()
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

/// A rate in bytes per second, binary units (`1.5 MiB/s`).
fn fmt_rate(bytes: f64) -> String {
    let mut v = bytes;
    for unit in ["B/s", "KiB/s", "MiB/s", "GiB/s"] {
        if v < 1024.0 || unit == "GiB/s" {
            return format!("{v:.1} {unit}");
        }
        v /= 1024.0;
    }
    unreachable!("the last unit returns")
}

/// The stores as `/api/v1/stores` has them: one row each, firing invariants named.
fn stores_table(h: &mut String, snap: &crate::snapshot::Snapshot) {
    h.push_str(
        "<h2>Stores</h2><table><tr><th>id</th><th>address</th><th>state</th><th>leaders</th>\
         <th>regions</th><th>disk available</th><th>slow score</th><th>hot write</th>\
         <th>firing</th></tr>",
    );
    if snap.stores.is_empty() {
        h.push_str("<tr><td colspan=\"9\">no stores from PD yet</td></tr>");
    }
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    for s in &snap.stores {
        let firing: Vec<&str> = snap
            .invariants
            .iter()
            .filter(|i| i.store == s.id && i.state == Phase::Firing)
            .map(|i| &*i.name)
            .collect();
        let disk = match (s.available_bytes, s.capacity_bytes) {
            (Some(a), Some(c)) if c > 0 => format!(
                "{:.1} of {:.1} GiB ({:.0}%)",
                a as f64 / 1073741824.0,
                c as f64 / 1073741824.0,
                100.0 * a as f64 / c as f64
            ),
            _ => String::new(),
        };
        let hot = s
            .hot_write
            .map(|f| format!("{} in {} regions", fmt_rate(f.bytes_per_second), f.regions))
            .unwrap_or_default();
        let _ = write!(
            h,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            if firing.is_empty() { "ok" } else { "firing" },
            esc(&s.id),
            esc(&s.address),
            esc(&s.state),
            opt(s.leader_count),
            opt(s.region_count),
            disk,
            s.slow_score.map(|v| v.to_string()).unwrap_or_default(),
            esc(&hot),
            esc(&firing.join(", "))
        );
    }
    h.push_str("</table>");
}

fn json_error(status: StatusCode, message: &str) -> Resp {
    respond(
        status,
        "application/json",
        serde_json::json!({ "error": message }).to_string(),
    )
}

/// `GET /api/v1/hot-regions`: 400 for a bad query, 502 with the reason when PD's reply could
/// not be had or read.
async fn hot_regions_reply(state: Arc<Endpoints>, query: Option<String>) -> Resp {
    let q = match hot_regions::parse_query(query.as_deref()) {
        Ok(q) => q,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
    };
    let poll = state.view.published.snapshot().taken_at;
    let fetched = state.hot_regions.get(q.kind, poll).await;
    match fetched.as_ref() {
        Ok(hot) => json(&hot_regions::reply(q, poll, hot)),
        Err(e) => json_error(
            StatusCode::BAD_GATEWAY,
            &format!("PD's /hotspot/regions/{}: {e}", q.kind.as_str()),
        ),
    }
}

/// `POST /-/reload` (and `PUT`, as Prometheus): 200 once the new configuration runs, 500 with
/// the reason when it was refused (the old one keeps running).
async fn reload(trigger: Option<ReloadTrigger>) -> Resp {
    let text = "text/plain; charset=utf-8";
    match trigger {
        None => respond(StatusCode::NOT_FOUND, text, "reload is not available\n"),
        Some(t) => match t().await {
            Ok(()) => respond(StatusCode::OK, text, "configuration reloaded\n"),
            Err(e) => respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                text,
                format!("failed to reload config: {e}\n"),
            ),
        },
    }
}

/// The request handler for [`crate::http_server::serve`].
pub fn handler(state: Arc<Endpoints>) -> Handler {
    Arc::new(move |req: Request<Incoming>| {
        if req.uri().path() == "/-/reload" && matches!(*req.method(), Method::POST | Method::PUT) {
            return Box::pin(reload(state.reload.clone()));
        }
        if req.uri().path() == "/api/v1/hot-regions"
            && matches!(*req.method(), Method::GET | Method::HEAD)
        {
            let head = req.method() == Method::HEAD;
            let (state, query) = (state.clone(), req.uri().query().map(str::to_owned));
            return Box::pin(async move {
                let mut resp = hot_regions_reply(state, query).await;
                if head {
                    *resp.body_mut() = Full::new(Bytes::new());
                }
                resp
            });
        }
        let mut resp = handle(
            &state,
            req.method(),
            req.uri().path(),
            req.uri().query(),
            req.headers(),
        );
        if req.method() == Method::HEAD {
            *resp.body_mut() = Full::new(Bytes::new());
        }
        Box::pin(async move { resp })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{HotFlow, Op, Severity};
    use crate::snapshot::{InvariantView, Snapshot, StoreView};

    #[test]
    fn the_stores_table_escapes_and_names_the_firing_invariants() {
        let snap = Snapshot {
            stores: vec![StoreView {
                id: "7".into(),
                address: "<b>tikv&7</b>:20160".into(),
                status_address: String::new(),
                version: String::new(),
                engine: "tikv".into(),
                state: "Up".into(),
                last_heartbeat: None,
                leader_count: Some(3),
                region_count: None,
                capacity_bytes: Some(100 << 30),
                available_bytes: Some(25 << 30),
                slow_score: Some(1.0),
                start_timestamp: None,
                hot_write: Some(HotFlow {
                    regions: 2.0,
                    bytes_per_second: 1536.0,
                    keys_per_second: 1.0,
                }),
                hot_read: None,
            }],
            invariants: vec![InvariantView {
                name: "store_slow".into(),
                store: "7".into(),
                severity: Severity::Warning,
                state: Phase::Firing,
                unknown: false,
                since: None,
                value: None,
                op: Op::Gt,
                threshold: 80.0,
                clear_threshold: None,
                grace_seconds: 0.0,
                message: "".into(),
                description: "".into(),
            }],
            ..Snapshot::default()
        };
        let mut h = String::new();
        stores_table(&mut h, &snap);
        assert!(
            h.contains(
                "<tr class=\"firing\"><td>7</td><td>&lt;b&gt;tikv&amp;7&lt;/b&gt;:20160</td>\
                 <td>Up</td><td>3</td><td></td><td>25.0 of 100.0 GiB (25%)</td><td>1</td>\
                 <td>1.5 KiB/s in 2 regions</td><td>store_slow</td></tr>"
            ),
            "{h}"
        );
        let mut empty = String::new();
        stores_table(&mut empty, &Snapshot::default());
        assert!(empty.contains("no stores from PD yet"), "{empty}");
        assert_eq!(fmt_rate(0.0), "0.0 B/s");
        assert_eq!(fmt_rate(5.0 * 1073741824.0 * 1024.0), "5120.0 GiB/s");
    }
}
