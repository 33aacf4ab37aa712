//! The exporter's own log: logfmt lines on stderr (`ts=... level=info msg="..."`).

fn line(level: &str, msg: &str) {
    let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    let msg = msg
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    eprintln!("ts={ts} level={level} msg=\"{msg}\"");
}

/// Logs at info level.
pub fn info(msg: &str) {
    line("info", msg);
}

/// Logs at warn level.
pub fn warn(msg: &str) {
    line("warn", msg);
}

/// Logs at error level.
pub fn error(msg: &str) {
    line("error", msg);
}
