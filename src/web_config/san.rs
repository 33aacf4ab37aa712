//! The subject alternative names of a DER certificate, written the way Go's `crypto/x509`
//! gives them to the toolkit's `client_allowed_sans` check: DNS names, e-mail addresses and
//! URIs as written, IP addresses in Go's `net.IP.String()` form (an IPv4-mapped IPv6 address as
//! IPv4). A minimal DER walk over the certificate's extensions (RFC 5280 §4.1, §4.2.1.6); the
//! chain and signature are verified elsewhere (rustls' verifier runs first).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// DER tags used here.
const SEQUENCE: u8 = 0x30;
const EXTENSIONS: u8 = 0xa3; // [3] EXPLICIT in TBSCertificate
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
/// `id-ce-subjectAltName`, 2.5.29.17.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
/// GeneralName choices (context-specific, primitive).
const RFC822_NAME: u8 = 0x81;
const DNS_NAME: u8 = 0x82;
const URI: u8 = 0x86;
const IP_ADDRESS: u8 = 0x87;

/// One TLV: (tag, content, rest after it); `None` when malformed.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Every TLV of `input`, in order; `None` when any is malformed.
fn items(mut input: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (tag, content, rest) = tlv(input)?;
        out.push((tag, content));
        input = rest;
    }
    Some(out)
}

/// The content of `input` when it is one TLV with `tag`.
fn expect(input: &[u8], tag: u8) -> Option<&[u8]> {
    let (t, content, _) = tlv(input)?;
    (t == tag).then_some(content)
}

/// The subject alternative names of the certificate `der` (empty when it has none); `None`
/// when the certificate cannot be read.
pub(crate) fn subject_alt_names(der: &[u8]) -> Option<Vec<String>> {
    let cert = expect(der, SEQUENCE)?;
    let tbs = expect(cert, SEQUENCE)?;
    let Some((_, extensions)) = items(tbs)?.into_iter().find(|(t, _)| *t == EXTENSIONS) else {
        return Some(Vec::new());
    };
    let mut names = Vec::new();
    for (tag, ext) in items(expect(extensions, SEQUENCE)?)? {
        if tag != SEQUENCE {
            return None;
        }
        let parts = items(ext)?;
        let (Some((OID, oid)), value) = (parts.first().copied(), parts.last().copied()) else {
            return None;
        };
        if oid != SUBJECT_ALT_NAME {
            continue;
        }
        // extnID, [critical BOOLEAN,] extnValue OCTET STRING
        let (OCTET_STRING, value) = value? else {
            return None;
        };
        for (tag, name) in items(expect(value, SEQUENCE)?)? {
            match tag {
                RFC822_NAME | DNS_NAME | URI => {
                    names.push(String::from_utf8_lossy(name).into_owned());
                }
                IP_ADDRESS => names.extend(ip(name)),
                _ => {}
            }
        }
    }
    Some(names)
}

/// An `iPAddress` name as Go prints it.
fn ip(bytes: &[u8]) -> Option<String> {
    let addr = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        16 => {
            let b: [u8; 16] = bytes.try_into().ok()?;
            let v6 = Ipv6Addr::from(b);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return None,
    };
    Some(addr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType};

    fn cert_with(sans: Vec<SanType>) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = sans;
        p.self_signed(&key).unwrap().der().to_vec()
    }

    /// Every SAN kind the toolkit compares, in the certificate's order, in Go's spelling.
    #[test]
    fn reads_dns_email_ip_and_uri_names() {
        let der = cert_with(vec![
            SanType::DnsName("prometheus.monitoring.svc".try_into().unwrap()),
            SanType::Rfc822Name("ops@example.com".try_into().unwrap()),
            SanType::IpAddress("10.0.0.7".parse().unwrap()),
            SanType::IpAddress("2001:db8::1".parse().unwrap()),
            SanType::IpAddress("::ffff:192.0.2.1".parse().unwrap()),
            SanType::URI(
                "spiffe://cluster.local/ns/monitoring/sa/prometheus"
                    .try_into()
                    .unwrap(),
            ),
        ]);
        assert_eq!(
            subject_alt_names(&der).unwrap(),
            [
                "prometheus.monitoring.svc",
                "ops@example.com",
                "10.0.0.7",
                "2001:db8::1",
                "192.0.2.1",
                "spiffe://cluster.local/ns/monitoring/sa/prometheus",
            ]
        );
    }

    #[test]
    fn no_san_extension_is_no_names_and_garbage_is_unreadable() {
        assert_eq!(
            subject_alt_names(&cert_with(Vec::new())).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(subject_alt_names(b"\x30\x05\x30\x03"), None);
        assert_eq!(subject_alt_names(b""), None);
        let der = cert_with(vec![SanType::DnsName("a.example".try_into().unwrap())]);
        assert_eq!(subject_alt_names(&der[..der.len() - 10]), None, "truncated");
    }
}
