//! `/metrics` rendered in two parts: the snapshot families (per invariant and per store, the
//! bulk of a scrape at 1000 stores) once per published snapshot, in each format and coding on
//! first demand, and the live families (heartbeat ages, log counters, process, connections...)
//! at every scrape. The answer is byte for byte what the uncached [`super::metrics::registry`]
//! renders; a gzipped answer is one gzip member whose deflate stream is the cached part's
//! blocks (sync-flushed: byte-aligned, not final) followed by the live part's own blocks, with
//! the CRC of both combined. Scrapes then cost a copy and the live part's encoding, not a
//! render and compression of megabytes. After each poll the new snapshot's part is rendered
//! ahead of the scrapes ([`CachedMetrics::prepare`]); while that runs, scrapes get the previous
//! snapshot's part with the live families of the new one.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use flate2::Crc;
use flate2::write::DeflateEncoder;
use prometheus_client::registry::Registry;

use super::View;
use super::format::{self, Format, TextConverter};
use super::metrics::{BuildInfo, live_registry, render, render_snapshot, write_snapshot};
use crate::snapshot::Snapshot;

/// The gzip header flate2 writes too: magic, deflate, no flags, no mtime, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// One part compressed as the head of a deflate stream: blocks ending in a sync flush.
#[derive(Debug)]
struct Deflated {
    blocks: Vec<u8>,
    crc: Crc,
}

impl Deflated {
    fn new(text: &str) -> Deflated {
        let mut enc = DeflateEncoder::new(
            Vec::with_capacity(text.len() / 8 + 64),
            flate2::Compression::fast(),
        );
        // Writing into a Vec cannot fail; `flush` is a sync flush.
        let _ = enc.write_all(text.as_bytes()).and_then(|()| enc.flush());
        let mut crc = Crc::new();
        crc.update(text.as_bytes());
        Deflated {
            blocks: std::mem::take(enc.get_mut()),
            crc,
        }
    }
}

/// Compresses the snapshot part as it is rendered, a line at a time: OpenMetrics as written,
/// or converted to text 0.0.4; the closing `# EOF` is left out. At 1000 stores the gzipped
/// part is 300 KB and its text, never held whole this way, 6 MB.
struct LineDeflater {
    enc: DeflateEncoder<Vec<u8>>,
    crc: Crc,
    /// The line being written, until its newline.
    partial: String,
    /// Lines ready to be compressed (compressed by the 64 KiB).
    pending: String,
    /// Set for text 0.0.4.
    text: Option<TextConverter>,
}

impl LineDeflater {
    fn new(f: Format) -> LineDeflater {
        LineDeflater {
            enc: DeflateEncoder::new(Vec::with_capacity(64 * 1024), flate2::Compression::fast()),
            crc: Crc::new(),
            partial: String::new(),
            pending: String::with_capacity(80 * 1024),
            text: (!f.is_openmetrics()).then(TextConverter::default),
        }
    }

    /// The snapshot part of `part` in format `f`, compressed.
    fn part(part: &Part, f: Format) -> Deflated {
        let mut w = LineDeflater::new(f);
        match write_snapshot(part.snap.clone(), part.cluster.as_deref(), &mut w) {
            Ok(()) => w.finish(),
            Err(_) => Deflated::new(""),
        }
    }

    fn line(&mut self, line: &str) {
        match &mut self.text {
            // As `str::lines` gives them to `format::to_text`.
            Some(conv) => conv.line(line.strip_suffix('\r').unwrap_or(line), &mut self.pending),
            None if line == "# EOF" => {}
            None => {
                self.pending.push_str(line);
                self.pending.push('\n');
            }
        }
        if self.pending.len() >= 64 * 1024 {
            self.compress();
        }
    }

    fn compress(&mut self) {
        // Writing into a Vec cannot fail.
        let _ = self.enc.write_all(self.pending.as_bytes());
        self.crc.update(self.pending.as_bytes());
        self.pending.clear();
    }

    fn finish(mut self) -> Deflated {
        let last = std::mem::take(&mut self.partial);
        match &mut self.text {
            Some(_) if !last.is_empty() => self.line(&last),
            Some(_) => {}
            None => self.pending.push_str(&last),
        }
        if let Some(conv) = self.text.take() {
            conv.finish(&mut self.pending);
        }
        self.compress();
        // A sync flush: the blocks end byte-aligned, not final.
        let _ = self.enc.flush();
        Deflated {
            blocks: std::mem::take(self.enc.get_mut()),
            crc: self.crc,
        }
    }
}

impl std::fmt::Write for LineDeflater {
    fn write_str(&mut self, mut s: &str) -> std::fmt::Result {
        while let Some(i) = memchr::memchr(b'\n', s.as_bytes()) {
            if self.partial.is_empty() {
                self.line(&s[..i]);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.push_str(&s[..i]);
                self.line(&line);
                line.clear();
                self.partial = line;
            }
            s = &s[i + 1..];
        }
        self.partial.push_str(s);
        Ok(())
    }
}

/// The snapshot part of one snapshot, in each format and coding once asked for. Only what
/// scrapes ask for is kept: Prometheus asks for one format, gzipped, so a poll usually keeps
/// only that compressed part (a few hundred KB at 1000 stores) and no uncompressed text.
#[derive(Debug)]
struct Part {
    snap: Arc<Snapshot>,
    cluster: Option<String>,
    openmetrics: OnceLock<String>,
    text: OnceLock<String>,
    openmetrics_gz: OnceLock<Deflated>,
    text_gz: OnceLock<Deflated>,
}

impl Part {
    fn new(snap: Arc<Snapshot>, cluster: Option<String>) -> Part {
        Part {
            snap,
            cluster,
            openmetrics: OnceLock::new(),
            text: OnceLock::new(),
            openmetrics_gz: OnceLock::new(),
            text_gz: OnceLock::new(),
        }
    }

    /// The part in format `f`, rendered now (from the cached OpenMetrics text if there is one).
    fn render(&self, f: Format) -> String {
        // Called only while `f`'s own cell is empty; text converts the OpenMetrics part.
        let om = || render_snapshot(self.snap.clone(), self.cluster.as_deref());
        match (f.is_openmetrics(), self.openmetrics.get()) {
            (true, _) => om(),
            (false, Some(om)) => format::to_text(om),
            (false, None) => format::to_text(&om()),
        }
    }

    /// Whether format `f` (gzipped or not) is rendered already.
    fn has(&self, f: Format, gzipped: bool) -> bool {
        match (f.is_openmetrics(), gzipped) {
            (true, false) => self.openmetrics.get().is_some(),
            (true, true) => self.openmetrics_gz.get().is_some(),
            (false, false) => self.text.get().is_some(),
            (false, true) => self.text_gz.get().is_some(),
        }
    }

    /// The part in format `f`, kept for the next scrapes of this snapshot.
    fn body(&self, f: Format) -> &str {
        let cell = if f.is_openmetrics() {
            &self.openmetrics
        } else {
            &self.text
        };
        cell.get_or_init(|| self.render(f))
    }

    /// The part in format `f` compressed, kept; its text is kept only if already there (and
    /// otherwise never rendered whole).
    fn deflated(&self, f: Format) -> &Deflated {
        let (cell, text) = if f.is_openmetrics() {
            (&self.openmetrics_gz, &self.openmetrics)
        } else {
            (&self.text_gz, &self.text)
        };
        cell.get_or_init(|| match text.get() {
            Some(t) => Deflated::new(t),
            None => LineDeflater::part(self, f),
        })
    }
}

/// The exporter's `/metrics`, the snapshot part cached per published snapshot.
pub struct CachedMetrics {
    view: Arc<View>,
    live: Registry,
    cluster: Option<String>,
    part: Mutex<Option<Arc<Part>>>,
    /// The snapshot [`CachedMetrics::prepare`] is rendering (lock order: `part` first).
    preparing: Mutex<Option<Arc<Snapshot>>>,
    /// When a scrape last asked for each format and coding, by [`KINDS`] index.
    asked: Mutex<[Option<Instant>; 4]>,
}

/// The formats and codings a part is kept in (gzipped or not), uncompressed first: a part
/// prepared in both compresses the text it has rendered, as a scrape would have it.
const KINDS: [(Format, bool); 4] = [
    (Format::OpenMetrics1, false),
    (Format::Text, false),
    (Format::OpenMetrics1, true),
    (Format::Text, true),
];

/// The index in [`KINDS`] of format `f` (either OpenMetrics version), gzipped or not.
fn kind(f: Format, gzipped: bool) -> usize {
    usize::from(!f.is_openmetrics()) + 2 * usize::from(gzipped)
}

/// How long after a scrape asked for a format [`CachedMetrics::prepare`] keeps rendering it
/// (longer than any scrape interval in use).
const PREPARE_WINDOW: Duration = Duration::from_secs(300);

impl std::fmt::Debug for CachedMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedMetrics")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl CachedMetrics {
    /// The exposition of `view`; with `cluster`, every series carries `cluster="<name>"`.
    pub fn new(view: Arc<View>, build: BuildInfo, cluster: Option<&str>) -> CachedMetrics {
        CachedMetrics {
            live: live_registry(view.clone(), build, cluster),
            view,
            cluster: cluster.map(str::to_owned),
            part: Mutex::new(None),
            preparing: Mutex::new(None),
            asked: Mutex::new([None; 4]),
        }
    }

    /// The snapshot part to serve format `f` (gzipped or not) from: the part of the snapshot
    /// published now (rendered if it is new; concurrent scrapes of a new snapshot wait for one
    /// render), or, while [`CachedMetrics::prepare`] renders that snapshot, the previous part if
    /// it has `f` already.
    fn part(&self, f: Format, gzipped: bool) -> Arc<Part> {
        let snap = self.view.published.snapshot();
        let mut cached = self.part.lock().unwrap_or_else(|e| e.into_inner());
        match &*cached {
            Some(p) if Arc::ptr_eq(&p.snap, &snap) => p.clone(),
            Some(p) if p.has(f, gzipped) && self.preparing(&snap) => p.clone(),
            _ => {
                let p = Arc::new(Part::new(snap, self.cluster.clone()));
                *cached = Some(p.clone());
                p
            }
        }
    }

    /// Whether [`CachedMetrics::prepare`] is rendering `snap`.
    fn preparing(&self, snap: &Arc<Snapshot>) -> bool {
        let preparing = self.preparing.lock().unwrap_or_else(|e| e.into_inner());
        preparing.as_ref().is_some_and(|p| Arc::ptr_eq(p, snap))
    }

    /// Renders the part of the snapshot published now ahead of the scrapes, in each format
    /// and coding a scrape asked for within [`PREPARE_WINDOW`] (nothing before the first
    /// scrape; a format asked once, by someone's `curl`, stops being rendered after it).
    /// Until it is ready, scrapes are answered from the previous snapshot's part (one poll
    /// older, for the time of a render: tens of milliseconds at 1000 stores), so no scrape
    /// waits for a render, also right after a poll.
    pub fn prepare(&self) {
        if let Some(part) = self.begin_prepare() {
            for (f, gzipped) in self.asked_lately() {
                if gzipped {
                    part.deflated(f);
                } else {
                    part.body(f);
                }
            }
            self.finish_prepare(part);
        }
    }

    /// A new part for the snapshot published now, unless it has one already.
    fn begin_prepare(&self) -> Option<Part> {
        let snap = self.view.published.snapshot();
        let cached = self.part.lock().unwrap_or_else(|e| e.into_inner());
        if cached.as_ref().is_some_and(|p| Arc::ptr_eq(&p.snap, &snap)) {
            return None;
        }
        *self.preparing.lock().unwrap_or_else(|e| e.into_inner()) = Some(snap.clone());
        Some(Part::new(snap, self.cluster.clone()))
    }

    /// Serves `part` from now on, if its snapshot is still the one published and no scrape
    /// has rendered a part of it meanwhile.
    fn finish_prepare(&self, part: Part) {
        let mut cached = self.part.lock().unwrap_or_else(|e| e.into_inner());
        let mut preparing = self.preparing.lock().unwrap_or_else(|e| e.into_inner());
        if preparing
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, &part.snap))
        {
            *preparing = None;
        }
        let current = self.view.published.snapshot();
        let served = cached
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(&p.snap, &current));
        if Arc::ptr_eq(&part.snap, &current) && !served {
            *cached = Some(Arc::new(part));
        }
    }

    /// Records that a scrape asked for format `f`, gzipped or not.
    fn mark_asked(&self, f: Format, gzipped: bool) {
        let i = kind(f, gzipped);
        self.asked.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(Instant::now());
    }

    /// The formats and codings asked for within [`PREPARE_WINDOW`], in [`KINDS`] order.
    fn asked_lately(&self) -> Vec<(Format, bool)> {
        let asked = *self.asked.lock().unwrap_or_else(|e| e.into_inner());
        KINDS
            .into_iter()
            .zip(asked)
            .filter(|(_, at)| at.is_some_and(|t| t.elapsed() <= PREPARE_WINDOW))
            .map(|(k, _)| k)
            .collect()
    }

    /// The live part in format `f`.
    fn live(&self, f: Format) -> String {
        let om = render(&self.live);
        if f.is_openmetrics() {
            om
        } else {
            format::to_text(&om)
        }
    }

    /// `/metrics` in format `f`, uncompressed.
    pub fn body(&self, f: Format) -> String {
        self.mark_asked(f, false);
        let part = self.part(f, false);
        let head = part.body(f);
        let live = self.live(f);
        let mut out = String::with_capacity(head.len() + live.len());
        out.push_str(head);
        out.push_str(&live);
        out
    }

    /// `/metrics` in format `f`, gzipped (fast level): one gzip member.
    pub fn gzipped(&self, f: Format) -> Vec<u8> {
        self.mark_asked(f, true);
        let part = self.part(f, true);
        let head = part.deflated(f);
        let live = self.live(f);
        let mut enc = DeflateEncoder::new(
            Vec::with_capacity(live.len() / 4 + 64),
            flate2::Compression::fast(),
        );
        let tail = enc
            .write_all(live.as_bytes())
            .and_then(|()| enc.finish())
            .unwrap_or_default();
        let mut live_crc = Crc::new();
        live_crc.update(live.as_bytes());
        let mut crc = Crc::new();
        crc.combine(&head.crc);
        crc.combine(&live_crc);
        let mut out = Vec::with_capacity(GZIP_HEADER.len() + head.blocks.len() + tail.len() + 8);
        out.extend_from_slice(&GZIP_HEADER);
        out.extend_from_slice(&head.blocks);
        out.extend_from_slice(&tail);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&crc.amount().to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::exposition::metrics::tests::{build, full_view};
    use crate::exposition::metrics::{registry, render_text};

    /// The exposition without the samples that move between two renders (process, heartbeat
    /// age at scrape time).
    fn steady(body: &str) -> String {
        body.lines()
            .filter(|l| {
                !(l.starts_with("process_") || l.starts_with("tikv_store_heartbeat_age_seconds{"))
            })
            .map(|l| format!("{l}\n"))
            .collect()
    }

    fn gunzip(bytes: &[u8]) -> String {
        let mut out = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut out)
            .expect("one valid gzip member, CRC and length checked");
        out
    }

    fn full_view_of(c: &CachedMetrics) -> Arc<View> {
        c.view.clone()
    }

    #[test]
    fn cached_bodies_are_the_uncached_exposition_in_every_format_and_coding() {
        let view = full_view();
        let cached = CachedMetrics::new(view.clone(), build(), Some("c1"));
        let full = registry(view, build(), Some("c1"));
        for (f, uncached) in [
            (Format::OpenMetrics1, render(&full)),
            (Format::OpenMetrics001, render(&full)),
            (Format::Text, render_text(&full)),
        ] {
            assert!(uncached.contains("tikv_invariant_violation{"), "{uncached}");
            // Gzipped first (as Prometheus asks): compressed from a text rendered for it.
            let fresh = CachedMetrics::new(full_view_of(&cached), build(), Some("c1"));
            assert_eq!(
                steady(&gunzip(&fresh.gzipped(f))),
                steady(&uncached),
                "{f:?}"
            );
            assert_eq!(steady(&cached.body(f)), steady(&uncached), "{f:?}");
            // Twice: the second answer comes from the cached part.
            for _ in 0..2 {
                assert_eq!(
                    steady(&gunzip(&cached.gzipped(f))),
                    steady(&uncached),
                    "{f:?}"
                );
            }
        }
        assert!(cached.body(Format::OpenMetrics1).ends_with("# EOF\n"));
        assert!(!cached.body(Format::Text).contains("# EOF"));
    }

    #[test]
    fn the_streamed_part_is_the_rendered_part_whatever_the_write_boundaries() {
        use std::fmt::Write as _;
        let snap = full_view().published.snapshot();
        let om = render_snapshot(snap, Some("c1"));
        assert!(om.contains("tikv_invariant_violation{") && !om.contains("# EOF"));
        // What the encoder writes: the part and its closing line, in pieces of any size.
        let written = format!("{om}# EOF\n");
        for (f, want) in [
            (Format::OpenMetrics1, om.clone()),
            (Format::Text, format::to_text(&om)),
        ] {
            for size in [1, 7, 4096, written.len()] {
                let mut w = LineDeflater::new(f);
                let mut start = 0;
                while start < written.len() {
                    let mut end = (start + size).min(written.len());
                    while !written.is_char_boundary(end) {
                        end += 1;
                    }
                    w.write_str(&written[start..end]).unwrap();
                    start = end;
                }
                let d = w.finish();
                // The blocks end in a sync flush: a final empty block closes the stream.
                let mut stream = d.blocks.clone();
                stream.extend_from_slice(&[0x03, 0x00]);
                let mut got = String::new();
                flate2::read::DeflateDecoder::new(&stream[..])
                    .read_to_string(&mut got)
                    .unwrap();
                assert_eq!(got, want, "{f:?}, pieces of {size}");
                let mut crc = Crc::new();
                crc.update(want.as_bytes());
                assert_eq!((d.crc.sum(), d.crc.amount()), (crc.sum(), crc.amount()));
            }
        }
    }

    #[test]
    fn prepare_renders_a_new_snapshot_in_what_scrapes_asked_for_lately() {
        let view = full_view();
        let cached = CachedMetrics::new(view.clone(), build(), None);
        let current = || cached.part.lock().unwrap().clone().unwrap();
        let filled = |p: &Part| {
            [
                p.openmetrics.get().is_some(),
                p.openmetrics_gz.get().is_some(),
                p.text.get().is_some(),
                p.text_gz.get().is_some(),
            ]
        };
        let publish = |leaders| {
            let mut snap = (*view.published.snapshot()).clone();
            snap.stores[0].leader_count = Some(leaders);
            view.published.publish(snap);
        };
        // Before any scrape: a part, nothing rendered.
        cached.prepare();
        assert_eq!(filled(&current()), [false; 4]);
        let first = gunzip(&cached.gzipped(Format::Text));
        // A new snapshot: its part is rendered as gzipped text only, and served from there.
        publish(7);
        cached.prepare();
        let part = current();
        assert!(Arc::ptr_eq(&part.snap, &view.published.snapshot()));
        assert_eq!(filled(&part), [false, false, false, true]);
        let second = gunzip(&cached.gzipped(Format::Text));
        assert!(
            Arc::ptr_eq(&current(), &part),
            "the prepared part is served"
        );
        assert!(first.contains("tikv_store_leaders{store=\"1\"} 3.0"));
        assert!(second.contains("tikv_store_leaders{store=\"1\"} 7.0"));
        // Prepared again for the same snapshot: the same part.
        cached.prepare();
        assert!(Arc::ptr_eq(&current(), &part));
        // While the next snapshot renders, scrapes get the last part (if it has the format);
        // then the new one.
        publish(10);
        let next = cached.begin_prepare().unwrap();
        assert!(gunzip(&cached.gzipped(Format::Text)).contains("store=\"1\"} 7.0"));
        assert!(
            Arc::ptr_eq(&current(), &part),
            "the last part is served meanwhile"
        );
        next.deflated(Format::Text);
        cached.finish_prepare(next);
        assert!(gunzip(&cached.gzipped(Format::Text)).contains("store=\"1\"} 10.0"));
        let part = current();
        assert!(Arc::ptr_eq(&part.snap, &view.published.snapshot()));
        // A format the last part lacks (uncompressed text) is rendered for the new snapshot
        // at once, and that part stays served.
        publish(11);
        let next = cached.begin_prepare().unwrap();
        assert!(cached.body(Format::Text).contains("store=\"1\"} 11.0\n"));
        let scraped = current();
        cached.finish_prepare(next);
        assert!(Arc::ptr_eq(&current(), &scraped));
        assert!(gunzip(&cached.gzipped(Format::Text)).contains("store=\"1\"} 11.0\n"));
        // Not scraped since: still prepared while within the window, also OpenMetrics and text
        // asked; a format last asked longer ago than the window is not.
        cached.body(Format::OpenMetrics1);
        publish(8);
        cached.prepare();
        assert_eq!(filled(&current()), [true, false, true, true]);
        let long_ago = Instant::now().checked_sub(PREPARE_WINDOW + Duration::from_secs(1));
        cached.asked.lock().unwrap()[kind(Format::Text, true)] = long_ago;
        publish(9);
        cached.prepare();
        assert_eq!(filled(&current()), [true, false, true, false]);
    }

    #[test]
    fn a_new_snapshot_is_rendered_and_the_live_part_is_read_at_every_scrape() {
        let view = full_view();
        let cached = CachedMetrics::new(view.clone(), build(), None);
        let line = |body: &str, start: &str| {
            body.lines()
                .find(|l| l.starts_with(start))
                .map(str::to_owned)
        };
        let first = cached.body(Format::Text);
        assert_eq!(
            line(&first, "tikv_store_leaders{").as_deref(),
            Some("tikv_store_leaders{store=\"1\"} 3.0")
        );
        let up = "tikv_health_exporter_source_up{source=\"file:tikv.log\"}";
        assert_eq!(line(&first, up).as_deref(), Some(&*format!("{up} 0.0")));
        view.logs.list()[0].set_up(true);
        let mut snap = (*view.published.snapshot()).clone();
        snap.stores[0].leader_count = Some(7);
        view.published.publish(snap);
        for body in [
            cached.body(Format::Text),
            gunzip(&cached.gzipped(Format::Text)),
        ] {
            assert_eq!(
                line(&body, "tikv_store_leaders{").as_deref(),
                Some("tikv_store_leaders{store=\"1\"} 7.0")
            );
            assert_eq!(line(&body, up).as_deref(), Some(&*format!("{up} 1.0")));
        }
    }
}
