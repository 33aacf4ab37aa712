//! Binding a [`ListenAddress`] the way Go's `net.Listen("tcp", ...)` does (what every Go
//! exporter's `--web.listen-address` does): a wildcard (`:port`, `0.0.0.0:port`, `[::]:port`)
//! is one IPv6 socket with `IPV6_V6ONLY` off, which accepts IPv4 too (IPv4 `0.0.0.0` where the
//! host has no IPv6); an IP address binds that address. A host name is resolved once, at start,
//! and every address it resolves to is bound, all on one port (Go binds only the first IPv4
//! one: `localhost` here answers on `127.0.0.1` and `::1` both, as clients try either).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

use crate::config::ListenAddress;

/// Pending connections the kernel holds for the accept loop (capped by `net.core.somaxconn`).
const BACKLOG: i32 = 1024;

/// Why the server cannot listen.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The host name does not resolve.
    #[error("cannot resolve `{host}`: {source}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The host name resolves to no address.
    #[error("`{host}` resolves to no address")]
    NoAddress {
        /// The host name.
        host: String,
    },
    /// An address cannot be bound (in use, not on this host, a privileged port).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error of socket, bind or listen.
        source: io::Error,
    },
}

/// One listening socket per address `addr` stands for (see the module doc).
pub async fn bind(addr: &ListenAddress) -> Result<Vec<TcpListener>, ListenError> {
    match addr {
        ListenAddress::Any(port) => Ok(vec![bind_any(*port)?]),
        ListenAddress::Ip(a) => Ok(vec![bind_one(*a, false)?]),
        ListenAddress::Host(host, port) => {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), *port))
                .await
                .map_err(|source| ListenError::Resolve {
                    host: host.clone(),
                    source,
                })?
                .collect();
            if resolved.is_empty() {
                return Err(ListenError::NoAddress { host: host.clone() });
            }
            bind_all(&resolved)
        }
    }
}

/// `[::]:port` dual-stack, or `0.0.0.0:port` without IPv6.
fn bind_any(port: u16) -> Result<TcpListener, ListenError> {
    match bind_one(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)), true) {
        Err(ListenError::Bind { source, .. }) if no_ipv6(&source) => {
            crate::log::info(&format!(
                "no IPv6 on this host ({source}): listening on IPv4 only"
            ));
            bind_one(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), false)
        }
        other => other,
    }
}

/// Every address of a resolved host name, on the port the first one got (when asked for 0);
/// an address this host does not have (IPv6 off) is skipped while another one is bound.
fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, ListenError> {
    let mut unique: Vec<SocketAddr> = Vec::new();
    for a in addrs {
        if !unique.contains(a) {
            unique.push(*a);
        }
    }
    let mut out: Vec<TcpListener> = Vec::new();
    let mut skipped = None;
    for mut a in unique {
        if let Some(first) = out.first().and_then(|l| l.local_addr().ok()) {
            a.set_port(first.port());
        }
        match bind_one(a, false) {
            Ok(l) => out.push(l),
            Err(ListenError::Bind { addr, source }) if no_ipv6(&source) => {
                crate::log::warn(&format!("cannot listen on {addr}: {source}; skipped"));
                skipped = Some(ListenError::Bind { addr, source });
            }
            Err(e) => return Err(e),
        }
    }
    match (out.is_empty(), skipped) {
        (true, Some(e)) => Err(e),
        _ => Ok(out),
    }
}

/// A listening socket on `addr` (`SO_REUSEADDR` as std and Go set it; an IPv6 socket takes
/// IPv4 too when `dual_stack`, else only IPv6). Called within the runtime.
fn bind_one(addr: SocketAddr, dual_stack: bool) -> Result<TcpListener, ListenError> {
    let socket = || -> io::Result<TcpListener> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        if addr.is_ipv6() {
            s.set_only_v6(!dual_stack)?;
        }
        #[cfg(unix)]
        s.set_reuse_address(true)?;
        s.bind(&addr.into())?;
        s.listen(BACKLOG)?;
        s.set_nonblocking(true)?;
        TcpListener::from_std(s.into())
    };
    socket().map_err(|source| ListenError::Bind { addr, source })
}

/// Errors that mean "this host has no IPv6" (kernel without it, or the address not here).
fn no_ipv6(e: &io::Error) -> bool {
    use rustix::io::Errno;
    Errno::from_io_error(e).is_some_and(|n| {
        [
            Errno::AFNOSUPPORT,
            Errno::ADDRNOTAVAIL,
            Errno::PROTONOSUPPORT,
        ]
        .contains(&n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this machine has IPv6 loopback (the tests that need it say so and pass).
    fn has_ipv6_loopback() -> bool {
        let ok = std::net::TcpListener::bind("[::1]:0").is_ok();
        if !ok {
            eprintln!("skipped: no IPv6 loopback on this machine");
        }
        ok
    }

    async fn answers(addr: SocketAddr, listener: &TcpListener) -> bool {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_client) => listener.accept().await.is_ok(),
            Err(_) => false,
        }
    }

    #[tokio::test]
    async fn a_wildcard_listens_on_ipv4_and_ipv6() {
        for written in [":0", "0.0.0.0:0", "[::]:0"] {
            let addr = crate::config::parse_listen_address(written).unwrap();
            let ls = bind(&addr).await.unwrap();
            assert_eq!(ls.len(), 1, "{written}: one socket");
            let port = ls[0].local_addr().unwrap().port();
            assert!(
                answers(SocketAddr::from(([127, 0, 0, 1], port)), &ls[0]).await,
                "{written}: IPv4"
            );
            if has_ipv6_loopback() {
                assert!(ls[0].local_addr().unwrap().is_ipv6(), "{written}");
                assert!(
                    answers(SocketAddr::from((Ipv6Addr::LOCALHOST, port)), &ls[0]).await,
                    "{written}: IPv6"
                );
            }
        }
    }

    #[tokio::test]
    async fn an_ip_address_listens_on_that_address_only() {
        let ls = bind(&ListenAddress::Ip("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        let port = ls[0].local_addr().unwrap().port();
        assert!(answers(SocketAddr::from(([127, 0, 0, 1], port)), &ls[0]).await);
        if has_ipv6_loopback() {
            assert!(
                tokio::net::TcpStream::connect(SocketAddr::from((Ipv6Addr::LOCALHOST, port)))
                    .await
                    .is_err()
            );
            let ls = bind(&ListenAddress::Ip("[::1]:0".parse().unwrap()))
                .await
                .unwrap();
            let port = ls[0].local_addr().unwrap().port();
            assert!(answers(SocketAddr::from((Ipv6Addr::LOCALHOST, port)), &ls[0]).await);
            assert!(
                tokio::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))
                    .await
                    .is_err(),
                "an IPv6 address takes no IPv4"
            );
        }
    }

    /// Every resolved address is bound, on the port the first one got.
    #[tokio::test]
    async fn every_address_of_a_name_is_bound_on_one_port() {
        let mut addrs = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        if has_ipv6_loopback() {
            addrs.push(SocketAddr::from((Ipv6Addr::LOCALHOST, 0)));
        }
        addrs.push(addrs[0]);
        let ls = bind_all(&addrs).unwrap();
        assert_eq!(ls.len(), addrs.len() - 1, "duplicates bound once");
        let bound: Vec<SocketAddr> = ls.iter().map(|l| l.local_addr().unwrap()).collect();
        let port = bound[0].port();
        assert_ne!(port, 0);
        assert!(bound.iter().all(|a| a.port() == port), "{bound:?}");
        for (l, a) in ls.iter().zip(bound) {
            assert!(answers(a, l).await, "{a}");
        }

        // Through the resolver: `localhost` as this machine's hosts file has it.
        let want: std::collections::BTreeSet<_> = tokio::net::lookup_host(("localhost", 0))
            .await
            .unwrap()
            .map(|a| a.ip())
            .collect();
        let ls = bind(&ListenAddress::Host("localhost".into(), 0))
            .await
            .unwrap();
        let got: std::collections::BTreeSet<_> =
            ls.iter().map(|l| l.local_addr().unwrap().ip()).collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn errors_name_the_host_or_the_address() {
        let e = bind(&ListenAddress::Host("nonexistent.invalid".into(), 1))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("`nonexistent.invalid`"), "{e}");
        let taken = bind(&ListenAddress::Ip("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        let addr = taken[0].local_addr().unwrap();
        let e = bind(&ListenAddress::Ip(addr)).await.unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("cannot listen on {addr}: ")),
            "{e}"
        );
        // Not an address of this host.
        let e = bind(&ListenAddress::Ip("192.0.2.1:0".parse().unwrap()))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("192.0.2.1:0"), "{e}");
    }
}
