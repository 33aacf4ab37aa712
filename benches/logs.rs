//! Criterion benches for the parser, the classifier and the whole counting path.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tikv_health_exporter::logs::batch::ingest_all;
use tikv_health_exporter::logs::events::Classifier;
use tikv_health_exporter::logs::ingest::SourceStats;
use tikv_health_exporter::logs::parse::{DEFAULT_MAX_LINE_BYTES, parse_line};

const FIXTURE: &str = include_str!("../tests/data/tikv-pd-real-lines.log");

fn parser(c: &mut Criterion) {
    let lines: Vec<&[u8]> = FIXTURE.lines().map(str::as_bytes).collect();
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("validate_fixture_115_lines", |b| {
        b.iter(|| {
            for l in &lines {
                let _ = black_box(parse_line(black_box(l)));
            }
        })
    });
    g.bench_function("decode_all_fields_fixture_115_lines", |b| {
        b.iter(|| {
            for l in &lines {
                if let Ok(p) = parse_line(l) {
                    black_box(p.message.map(|m| m.decode()));
                    for f in p.fields() {
                        black_box((f.key.decode(), f.value.decode()));
                    }
                }
            }
        })
    });
    let tikv = br#"[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] ["became leader at term 6"] [term=6] [raft_id=45] [region_id=44]"#;
    g.throughput(Throughput::Elements(1));
    g.bench_function("validate_one_event_line", |b| {
        b.iter(|| black_box(parse_line(black_box(tikv))))
    });
    g.finish();
}

fn classifier(c: &mut Criterion) {
    let parsed: Vec<_> = FIXTURE
        .lines()
        .filter_map(|l| parse_line(l.as_bytes()).ok())
        .collect();
    let cls = Classifier::new();
    let mut g = c.benchmark_group("classify");
    g.throughput(Throughput::Elements(parsed.len() as u64));
    g.bench_function("fixture_113_parsed_lines", |b| {
        b.iter(|| {
            for p in &parsed {
                black_box(cls.classify(black_box(p)));
            }
        })
    });
    g.finish();
}

fn counting(c: &mut Criterion) {
    // ~2.2 MB: the fixture repeated; the same path `logs leadership --summary` runs.
    let data = FIXTURE.repeat(100).into_bytes();
    let mut g = c.benchmark_group("ingest_all");
    g.throughput(Throughput::Bytes(data.len() as u64));
    for threads in [1, 2] {
        g.bench_function(format!("fixture_x100_threads_{threads}"), |b| {
            b.iter(|| {
                let stats = Arc::new(SourceStats::new("bench", ""));
                ingest_all(&data[..], DEFAULT_MAX_LINE_BYTES, threads, &stats).unwrap();
                black_box(stats.snapshot())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, parser, classifier, counting);
criterion_main!(benches);
