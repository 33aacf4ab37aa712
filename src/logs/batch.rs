//! Counting a whole input (a file or stdin read to its end) on several threads: the reader hands
//! runs of complete lines to workers, each with its own [`Ingestor`] publishing into the same
//! [`SourceStats`]. Memory is bounded by a small pool of reused chunk buffers.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender};

use super::cri::{CriJoiner, split_record};
use super::ingest::{Ingestor, SourceStats};
use super::reader::{Chunk, LineReader, RawLine, split_chunk};

/// Buffers in flight per worker (one being parsed, one queued, one being filled).
const BUFFERS_PER_WORKER: usize = 3;

/// Reads `input` to its end and counts every line into `stats` using `threads` threads
/// (1 = on the calling thread). Counts do not depend on the thread count.
pub fn ingest_all(
    input: impl Read,
    max_line: usize,
    threads: usize,
    stats: &Arc<SourceStats>,
) -> io::Result<()> {
    let mut reader = LineReader::new(input, max_line);
    let mut local = Ingestor::new(stats.clone(), None).without_line_times();
    // Kubernetes CRI records split into pieces are joined on one thread: a piece and the rest
    // of its line may fall into different chunks.
    let mut joiner = CriJoiner::new(max_line);
    if threads <= 1 {
        reader.read_available(|l| joiner.push(l, &mut |l| local.ingest_line(l)))?;
        reader.finish(|l| joiner.push(l, &mut |l| local.ingest_line(l)));
        joiner.finish(&mut |l| local.ingest_line(l));
        return Ok(());
    }
    // Whether the input is a CRI file, decided on its first line: then it is read on this
    // thread alone.
    let mut cri: Option<bool> = None;
    std::thread::scope(|s| {
        let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
        let mut workers: Vec<SyncSender<Vec<u8>>> = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (tx, rx): (SyncSender<Vec<u8>>, Receiver<Vec<u8>>) = mpsc::sync_channel(1);
            let free_tx = free_tx.clone();
            let stats = stats.clone();
            s.spawn(move || {
                let mut ing = Ingestor::new(stats, None).without_line_times();
                for buf in rx {
                    split_chunk(&buf, max_line, |l| {
                        ing.ingest(l);
                    });
                    // The reader may have finished already; then the buffer is just dropped.
                    let _ = free_tx.send(buf);
                }
            });
            workers.push(tx);
        }
        let mut allocated = 0;
        let mut next = 0;
        let mut send_err = None;
        let result = reader.read_chunks(|c| match c {
            Chunk::TooLong(n) => {
                joiner.push(RawLine::TooLong(n), &mut |l| local.ingest_line(l));
            }
            Chunk::Lines(lines) => {
                let first = lines.split(|&c| c == b'\n').next().unwrap_or_default();
                if *cri.get_or_insert_with(|| split_record(first).is_some()) {
                    return split_chunk(lines, max_line, |l| {
                        joiner.push(l, &mut |l| local.ingest_line(l))
                    });
                }
                let mut buf = match free_rx.try_recv() {
                    Ok(b) => b,
                    Err(_) if allocated < threads * BUFFERS_PER_WORKER => {
                        allocated += 1;
                        Vec::with_capacity(lines.len())
                    }
                    Err(_) => free_rx.recv().unwrap_or_default(),
                };
                buf.clear();
                buf.extend_from_slice(lines);
                if workers[next].send(buf).is_err() {
                    send_err.get_or_insert_with(|| io::Error::other("log worker thread died"));
                }
                next = (next + 1) % workers.len();
            }
        });
        reader.finish(|l| joiner.push(l, &mut |l| local.ingest_line(l)));
        joiner.finish(&mut |l| local.ingest_line(l));
        drop(workers);
        result?;
        send_err.map_or(Ok(()), Err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_identical_for_any_thread_count() {
        let fixture = include_bytes!("../../tests/data/tikv-pd-real-lines.log");
        let mut data = Vec::new();
        for _ in 0..500 {
            data.extend_from_slice(fixture);
        }
        data.extend(std::iter::repeat_n(b'x', 5000));
        data.extend_from_slice(b"\n[2024/07/12 09:26:10.005 +00:00] [INFO] [raft.rs:874] [\"became leader at term 6\"]");
        let run = |threads| {
            let stats = Arc::new(SourceStats::new("t", ""));
            ingest_all(&data[..], 1000, threads, &stats).unwrap();
            stats.snapshot()
        };
        let one = run(1);
        assert_eq!(one.lines(), 115 * 500 + 2);
        assert_eq!(
            one.malformed,
            2 * 500 + 1,
            "shell lines and the over-long line"
        );
        assert_eq!(one.events[0], 2 * 500 + 1);
        for t in [2, 3, 4] {
            assert_eq!(run(t), one, "threads {t}");
        }
    }
}
