//! Container log files written the way kubelet and its runtime write them (project reference
//! `kubernetes.md` §1): `<root>/<namespace>_<pod>_<uid>/<container>/<restart count>.log`, mode
//! 0640, one record per `write` (`<RFC3339Nano> <stream> <P|F> <content>`, long lines split into
//! `P` pieces ended by an `F` record, as containerd does past its line limit), kubelet's rotation
//! (`rotateLog`: delete leftovers, gzip the older rotated files through `<f>.tmp`, rename the live
//! file to `<log>.<YYYYMMDD-HHMMSS>`, the runtime reopens a new one), container restarts (the
//! next `<n>.log` next to the old one) and garbage collection, pod deletion and re-creation (a
//! new uid, so a new directory).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// kubelet's `containerLogMaxFiles` default: the live file and at most 4 rotated ones.
const MAX_FILES: usize = 5;

/// A distinct uid for every pod (hex, like the API's UUIDs).
static NEXT_UID: AtomicU64 = AtomicU64::new(1);

/// The pod logs directory of one node (`/var/log/pods`).
pub struct PodLogs {
    /// Its path.
    pub root: PathBuf,
}

impl PodLogs {
    /// Uses (and creates) `root`.
    pub fn new(root: &Path) -> PodLogs {
        std::fs::create_dir_all(root).unwrap();
        PodLogs {
            root: root.to_path_buf(),
        }
    }

    /// A pod started on the node: its log directory with a new uid.
    pub fn start_pod(&self, namespace: &str, pod: &str) -> Pod {
        let n = NEXT_UID.fetch_add(1, Ordering::Relaxed);
        let uid = format!("6f1c2a8e-1b1d-4f43-9d53-{n:012x}");
        let dir = self.root.join(format!("{namespace}_{pod}_{uid}"));
        std::fs::create_dir(&dir).unwrap();
        Pod { dir }
    }
}

/// The log directory of one pod.
pub struct Pod {
    /// `<root>/<namespace>_<pod>_<uid>`.
    pub dir: PathBuf,
}

impl Pod {
    /// The first run (restart count 0) of container `name`: `<container>/0.log`.
    pub fn container(&self, name: &str) -> ContainerLog {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        ContainerLog::open(dir, 0)
    }

    /// The pod is deleted: kubelet removes its whole log directory.
    pub fn delete(self) {
        std::fs::remove_dir_all(&self.dir).unwrap();
    }
}

/// The log of one container (its current run), as the runtime writes it.
pub struct ContainerLog {
    dir: PathBuf,
    restart: u32,
    file: File,
    /// Drives the records' times and the rotated files' names.
    clock: u64,
}

impl ContainerLog {
    fn open(dir: PathBuf, restart: u32) -> ContainerLog {
        let file = create(&dir.join(format!("{restart}.log")));
        ContainerLog {
            dir,
            restart,
            file,
            clock: 0,
        }
    }

    /// The live file of this run.
    pub fn path(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.restart))
    }

    /// The restart count of this run.
    pub fn restart_count(&self) -> u32 {
        self.restart
    }

    fn timestamp(&mut self) -> String {
        self.clock += 1;
        let nanos = format!("{:09}", 123_456_789 + self.clock * 1_000);
        // containerd trims trailing zeros of the fraction (RFC3339Nano).
        format!(
            "2026-12-01T10:{:02}:{:02}.{}Z",
            (self.clock / 60) % 60,
            self.clock % 60,
            nanos.trim_end_matches('0')
        )
    }

    /// One record: `partial` writes a `P` record, else an `F` one.
    pub fn record(&mut self, stream: &str, partial: bool, content: &str) {
        let tag = if partial { "P" } else { "F" };
        let rec = format!("{} {stream} {tag} {content}\n", self.timestamp());
        self.file.write_all(rec.as_bytes()).unwrap();
    }

    /// One application line: records of at most `piece` content bytes (`P` pieces, then `F`).
    pub fn line(&mut self, stream: &str, content: &str, piece: usize) {
        let bytes = content.as_bytes();
        let pieces: Vec<&[u8]> = if bytes.is_empty() {
            vec![bytes]
        } else {
            bytes.chunks(piece.max(1)).collect()
        };
        for (i, p) in pieces.iter().enumerate() {
            let text = std::str::from_utf8(p).expect("pieces of ASCII lines");
            self.record(stream, i + 1 < pieces.len(), text);
        }
    }

    /// kubelet's `rotateLog`: removes `*.tmp` leftovers and plain files that have a `.gz` twin,
    /// deletes the oldest rotated files beyond `MAX_FILES - 2`, gzips every other plain rotated
    /// file (to `<f>.tmp`, renamed `<f>.gz`, then `<f>` removed), renames the live file to
    /// `<log>.<YYYYMMDD-HHMMSS>` and has the runtime open a new live file.
    ///
    /// With `carry`, the line in progress straddles the rotation as it does in containerd: its
    /// first piece (`P`) lands in the renamed file, written through the old handle after the
    /// rename, and its last (`F`) in the new file.
    pub fn rotate(&mut self, carry: Option<(&str, &str, &str)>) {
        let live = self.path();
        let name = live.file_name().unwrap().to_str().unwrap().to_owned();
        let mut rotated: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_str().unwrap();
                n.starts_with(&format!("{name}."))
            })
            .collect();
        rotated.sort();
        for p in &rotated {
            let s = p.to_str().unwrap();
            if s.ends_with(".tmp")
                || (!s.ends_with(".gz") && Path::new(&format!("{s}.gz")).exists())
            {
                std::fs::remove_file(p).unwrap();
            }
        }
        rotated.retain(|p| p.exists());
        while rotated.len() > MAX_FILES - 2 {
            std::fs::remove_file(rotated.remove(0)).unwrap();
        }
        for p in rotated
            .iter()
            .filter(|p| !p.to_str().unwrap().ends_with(".gz"))
        {
            let tmp = PathBuf::from(format!("{}.tmp", p.display()));
            let out = Command::new("gzip")
                .arg("-c")
                .arg(p)
                .stdout(File::create(&tmp).unwrap())
                .status()
                .expect("gzip");
            assert!(out.success(), "gzip {}", p.display());
            std::fs::rename(&tmp, format!("{}.gz", p.display())).unwrap();
            std::fs::remove_file(p).unwrap();
        }
        self.clock += 10;
        let stamp = format!(
            "20261201-10{:02}{:02}",
            (self.clock / 60) % 60,
            self.clock % 60
        );
        std::fs::rename(&live, self.dir.join(format!("{name}.{stamp}"))).unwrap();
        if let Some((stream, first, _)) = carry {
            self.record(stream, true, first);
        }
        self.file = create(&live);
        if let Some((stream, _, rest)) = carry {
            self.record(stream, false, rest);
        }
    }

    /// The container restarts: its next run writes `<restart count + 1>.log` in the same
    /// directory; the previous file stays (for `kubectl logs --previous`).
    pub fn restart(&mut self) {
        let next = self.restart + 1;
        self.file = create(&self.dir.join(format!("{next}.log")));
        self.restart = next;
    }

    /// Container garbage collection removes the files of run `restart` (`<n>.log*`).
    pub fn remove_run(&self, restart: u32) {
        let prefix = format!("{restart}.log");
        for e in std::fs::read_dir(&self.dir).unwrap() {
            let p = e.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&prefix)
            {
                std::fs::remove_file(p).unwrap();
            }
        }
    }
}

/// A new log file as containerd opens it (`O_CREATE|O_APPEND|O_WRONLY`, 0640).
fn create(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
