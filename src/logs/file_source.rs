//! The file log source: one [`FileFollower`] per configured file on its own thread, feeding
//! the [`Ingestor`] until the context is cancelled, then draining what is left.

use std::path::PathBuf;
use std::time::Duration;

use super::cri::CriJoiner;
use super::file::{FileFollower, FileStatus, FollowOptions};
use super::ingest::Ingestor;
use super::source::{SourceContext, SourceHandle};

/// One file to follow.
#[derive(Clone, Debug)]
pub struct FileSource {
    /// Path of the file.
    pub path: PathBuf,
    /// Source label (`file:<name>`).
    pub label: String,
    /// PD store id the file belongs to (`""` when unknown).
    pub store: String,
    /// Read the existing content too.
    pub from_start: bool,
    /// How often the file is checked for new lines.
    pub poll_interval: Duration,
}

impl FileSource {
    /// Starts following the file on its own thread.
    pub fn spawn(self, ctx: SourceContext) -> std::io::Result<SourceHandle> {
        let stats = ctx
            .registry
            .register(self.label.clone(), self.store.clone());
        let mut follower = FileFollower::new(
            self.path.clone(),
            FollowOptions {
                from_start: self.from_start,
                max_line_bytes: ctx.max_line_bytes,
                ..FollowOptions::default()
            },
        );
        let thread = std::thread::Builder::new()
            .name(format!("log-{}", self.label))
            .spawn(move || {
                let mut ing = Ingestor::new(stats.clone(), Some(ctx.history.clone()));
                // Kubernetes CRI files: pieces of one line are joined; other lines pass.
                let mut joiner = CriJoiner::new(ctx.max_line_bytes);
                let mut last_error = String::new();
                while !ctx.cancel.is_cancelled() {
                    match follower.poll(|l| joiner.push(l, &mut |l| ing.ingest_line(l))) {
                        Ok(status) => {
                            stats.set_up(status == FileStatus::Open);
                            if !last_error.is_empty() {
                                crate::log::info(&format!(
                                    "log source {}: {} readable again",
                                    stats.source,
                                    follower.path().display()
                                ));
                                last_error.clear();
                            }
                        }
                        Err(e) => {
                            stats.set_up(false);
                            let msg = format!("{}: {e}", follower.path().display());
                            if msg != last_error {
                                crate::log::warn(&format!("log source {}: {msg}", stats.source));
                                last_error = msg;
                            }
                        }
                    }
                    ing.flush();
                    std::thread::sleep(self.poll_interval);
                }
                follower.finish(|l| joiner.push(l, &mut |l| ing.ingest_line(l)));
                joiner.finish(&mut |l| ing.ingest_line(l));
                ing.flush();
            })?;
        Ok(SourceHandle::Thread(thread))
    }
}
