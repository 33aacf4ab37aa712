//! The handshake-signature half of a rustls certificate verifier, written once for the
//! verifiers of both sides (the HTTP clients' server verifiers in `sources::http::tls`, the
//! web server's client verifiers in `web_config::tls`): either checked with a crypto
//! provider's algorithms (verifiers that accept any certificate still check that the peer
//! holds its key) or delegated to the verifier they wrap.

/// Expands, inside an `impl ServerCertVerifier` or `impl ClientCertVerifier` block, to
/// `verify_tls12_signature`, `verify_tls13_signature` and `supported_verify_schemes`:
/// `provider: <field>` checks them with the `Arc<CryptoProvider>` in `self.<field>`;
/// `inner: <field>` delegates them to the verifier in `self.<field>`.
macro_rules! handshake_signatures {
    (provider: $field:tt) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.$field.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.$field.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.$field
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
    (inner: $field:tt) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.$field.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.$field.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.$field.supported_verify_schemes()
        }
    };
}

pub(crate) use handshake_signatures;
