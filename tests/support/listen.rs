//! Child processes listen on port 0 and the test reads the port they got from `/proc`: no port
//! is picked first and bound later by someone else (a `free_port()` that another process grabs
//! in between), and a test never talks to another test's process on a reused port.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

use super::wait;

/// The TCP addresses process `pid` listens on (from `/proc/<pid>/fd` and `/proc/<pid>/net/tcp*`).
pub fn listening(pid: u32) -> Vec<SocketAddr> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: HashSet<String> = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?;
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut out = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for row in text.lines().skip(1) {
            let cols: Vec<&str> = row.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
            if cols.len() > 9
                && cols[3] == "0A"
                && inodes.contains(cols[9])
                && let Some(a) = parse_proc_addr(cols[1])
            {
                out.push(a);
            }
        }
    }
    out.sort();
    out
}

/// `0100007F:1F90` (IPv4) or 32 hex digits `:PORT` (IPv6), as the kernel prints them: the
/// address in host-order 32-bit words, the port big-endian.
fn parse_proc_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok();
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?.to_le_bytes())),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?.to_le_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Waits (bounded by [`wait::PATIENCE`]) until `child` listens on exactly one port not in
/// `except` (on one address or several), and returns an address to reach it: `127.0.0.1` for a
/// wildcard (`0.0.0.0`, or `[::]` which takes IPv4 too), else the first address it listens on
/// (IPv4 first); `Err` says why not (the child exited, it never listened, or it listens on
/// several ports).
pub fn wait_listening(child: &mut Child, except: &[u16]) -> Result<SocketAddr, String> {
    let pid = child.id();
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status} before listening"));
        }
        let addrs: Vec<SocketAddr> = listening(pid)
            .into_iter()
            .filter(|a| !except.contains(&a.port()))
            .collect();
        let mut ports: Vec<u16> = addrs.iter().map(SocketAddr::port).collect();
        ports.sort_unstable();
        ports.dedup();
        match (ports.as_slice(), addrs.first()) {
            ([port], Some(a)) if a.ip().is_unspecified() => {
                return Ok(SocketAddr::from(([127, 0, 0, 1], *port)));
            }
            ([_], Some(a)) => return Ok(*a),
            ([], _) if start.elapsed() < wait::PATIENCE => {
                std::thread::sleep(Duration::from_millis(20))
            }
            ([], _) => return Err(format!("not listening after {:?}", wait::PATIENCE)),
            _ => return Err(format!("listens on several ports: {addrs:?}")),
        }
    }
}

/// An address where nothing listens, so a connection is refused at once: port 1 on loopback,
/// outside the ephemeral range (no `bind(…:0)` or outgoing connection ever gets it) and below
/// 1024, where none of the processes these tests start listens.
pub fn refused_addr() -> SocketAddr {
    let addr = SocketAddr::from(([127, 0, 0, 1], 1));
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => addr,
        other => panic!("expected nothing to listen on {addr}, got {other:?}"),
    }
}

/// `http://127.0.0.1:1`, see [`refused_addr`].
pub fn refused_url() -> String {
    format!("http://{}", refused_addr())
}
