//! A blocking HTTPS client on rustls for tests of the exporter's TLS server: trusts one CA,
//! optionally presents a client certificate, speaks HTTP/1.1 with keep-alive (bodies read by
//! `Content-Length`, as hyper sends them), and reports TLS failures with rustls' own words
//! (`received fatal alert: CertificateRequired`, `invalid peer certificate: Expired...`).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::exporter::ANSWER_TIMEOUT;

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Every header, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Answer {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `Basic <base64(user:password)>`, the value of an `Authorization` header.
pub fn basic(user: &str, password: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b64}")
}

/// A client configuration: the CA it trusts and the certificate it presents.
#[derive(Clone)]
pub struct Https {
    config: Arc<ClientConfig>,
}

impl Https {
    /// Trusts only `ca_pem`, presents no certificate.
    pub fn new(ca_pem: &str) -> Https {
        Self::build(ca_pem, None)
    }

    /// Trusts only `ca_pem`, presents `cert_pem` (with `key_pem`).
    pub fn with_identity(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Https {
        Self::build(ca_pem, Some((cert_pem, key_pem)))
    }

    fn build(ca_pem: &str, identity: Option<(&str, &str)>) -> Https {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .map(Result::unwrap)
                        .collect(),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Https {
            config: Arc::new(config),
        }
    }

    /// Connects to `addr` (verifying the server's certificate for `127.0.0.1`) and completes
    /// the handshake.
    pub fn connect(&self, addr: SocketAddr) -> Result<Conn, String> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| format!("connect: {e}"))?;
        tcp.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        tcp.set_write_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        let name = ServerName::try_from(addr.ip().to_string()).unwrap();
        let conn = ClientConnection::new(self.config.clone(), name).map_err(|e| e.to_string())?;
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| format!("handshake: {e}"))?;
        }
        if tls.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
            // In TLS 1.3 the server judges the client's certificate after the client's side of
            // the handshake is done: its verdict is the next thing it sends, session tickets
            // or an alert (read before writing, or the alert may be lost to a reset).
            tls.sock
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            match tls.conn.read_tls(&mut tls.sock) {
                Ok(0) => return Err("closed right after the handshake".into()),
                Ok(_) => {
                    tls.conn
                        .process_new_packets()
                        .map_err(|e| format!("after the handshake: {e}"))?;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(format!("after the handshake: {e}")),
            }
            tls.sock.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        }
        Ok(Conn { tls })
    }

    /// One `GET path` on a new connection.
    pub fn get(
        &self,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Answer, String> {
        self.connect(addr)?.get(path, headers)
    }
}

/// An open HTTPS connection (kept alive between requests).
pub struct Conn {
    tls: StreamOwned<ClientConnection, TcpStream>,
}

impl Conn {
    /// The certificate the server presented (DER).
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        Some(self.tls.conn.peer_certificates()?.first()?.to_vec())
    }

    /// The ALPN protocol agreed on.
    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.tls.conn.alpn_protocol().map(<[u8]>::to_vec)
    }

    /// `GET path` with `headers` on this connection; the connection stays open.
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        write!(
            self.tls,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n"
        )
        .and_then(|()| self.tls.flush())
        .map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = self.tls.read(&mut buf).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err(format!(
                    "connection closed before an answer: {:?}",
                    String::from_utf8_lossy(&raw)
                ));
            }
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("malformed status line: {head:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            })
            .collect();
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| format!("no Content-Length: {head:?}"))?;
        while raw.len() < head_end + length {
            let n = self
                .tls
                .read(&mut buf)
                .map_err(|e| format!("read body: {e}"))?;
            if n == 0 {
                return Err("connection closed in the body".into());
            }
            raw.extend_from_slice(&buf[..n]);
        }
        Ok(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&raw[head_end..head_end + length]).into_owned(),
        })
    }
}
