//! Certificates between servers (RFC 6120 §13.7.2, RFC 6125 §6, XEP-0178): the TLS settings of
//! server streams in both directions, and the check of a peer's identity against its domain.
//!
//! A peer's certificate is verified after the handshake rather than during it, so a peer whose
//! certificate does not verify (self-signed, another name) can still prove its domain by
//! dialback where policy allows; what the verification said decides between SASL EXTERNAL,
//! dialback and refusal.

use crate::tls::Tls;
use dashmap::DashMap;
use rookery_core::config::Config;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

pub const ALPN: &[u8] = b"xmpp-server";

pub struct Certs {
    provider: Arc<CryptoProvider>,
    /// Incoming STARTTLS: asks for the peer's certificate without requiring one.
    pub starttls: TlsAcceptor,
    /// Incoming direct TLS (XEP-0368, ALPN `xmpp-server`).
    pub direct: TlsAcceptor,
    /// None when there is no trust anchor at all: then no certificate verifies.
    verifier: Option<Arc<WebPkiServerVerifier>>,
    /// Client settings per (local domain, direct TLS): each shows that domain's certificate.
    clients: DashMap<(String, bool), Arc<rustls::ClientConfig>>,
    tls: Tls,
}

impl Certs {
    pub fn new(config: &Config, tls: &Tls) -> anyhow::Result<Certs> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = &config.s2s.ca_file {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| anyhow::anyhow!("reading s2s.ca_file {}: {e}", path.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("parsing s2s.ca_file {}: {e}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            anyhow::ensure!(added > 0, "no certificate in {}", path.display());
        }
        let verifier = if roots.is_empty() {
            tracing::warn!("no trust anchors for server certificates: peers need dialback");
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()?,
            )
        };
        let build = |alpn: &[&[u8]]| -> anyhow::Result<TlsAcceptor> {
            let mut cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
                .with_client_cert_verifier(Arc::new(AskAnyCert(provider.clone())))
                .with_cert_resolver(tls.resolver());
            cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(TlsAcceptor::from(Arc::new(cfg)))
        };
        Ok(Certs {
            starttls: build(&[])?,
            direct: build(&[ALPN])?,
            verifier,
            clients: DashMap::new(),
            tls: tls.clone(),
            provider,
        })
    }

    /// Whether `chain` (end entity first) is a certificate for `domain` from a trusted issuer,
    /// by the DNS-ID rules of RFC 6125 §6.4 (subjectAltName only, a wildcard only as the whole
    /// left-most label, never the common name). `Err` says why not.
    pub fn verify(&self, chain: &[CertificateDer<'static>], domain: &str) -> Result<(), String> {
        let verifier = self.verifier.as_ref().ok_or("no trust anchors")?;
        let (end_entity, intermediates) = chain.split_first().ok_or("no certificate")?;
        let name = ServerName::try_from(domain.to_string()).map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(end_entity, intermediates, &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Client settings for a stream from `local`: shows its certificate (for the peer's SASL
    /// EXTERNAL) and accepts any server certificate, which `verify` then judges.
    pub fn client(&self, local: &str, direct: bool) -> Arc<rustls::ClientConfig> {
        let key = (local.to_ascii_lowercase(), direct);
        if let Some(c) = self.clients.get(&key) {
            return c.clone();
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(self.provider.clone())))
            .with_client_cert_resolver(Arc::new(OneCert(self.tls.key_for(local))));
        if direct {
            cfg.alpn_protocols = vec![ALPN.to_vec()];
        }
        let cfg = Arc::new(cfg);
        self.clients.insert(key, cfg.clone());
        cfg
    }
}

#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesClientCert for OneCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Checks only that the peer holds the key of the certificate it shows (the handshake
/// signatures); whom the certificate names and who issued it is `Certs::verify`'s business.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

fn tls12(
    p: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls12_signature(message, cert, dss, &p.signature_verification_algorithms)
}

fn tls13(
    p: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(message, cert, dss, &p.signature_verification_algorithms)
}

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12(&self.0, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13(&self.0, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The incoming side's counterpart of `AnyCert`: asks for a certificate, takes any or none.
#[derive(Debug)]
struct AskAnyCert(Arc<CryptoProvider>);

impl ClientCertVerifier for AskAnyCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12(&self.0, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13(&self.0, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA and certificates it issues, by rcgen.
    struct Ca {
        params: rcgen::CertificateParams,
        cert: rcgen::Certificate,
        key: rcgen::KeyPair,
    }

    impl Ca {
        fn new() -> Ca {
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p.distinguished_name
                .push(rcgen::DnType::CommonName, "Rookery test CA");
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = p.self_signed(&key).unwrap();
            Ca {
                params: p,
                cert,
                key,
            }
        }

        fn issue(&self, sans: &[&str], cn: Option<&str>) -> CertificateDer<'static> {
            let mut p = rcgen::CertificateParams::new(
                sans.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .unwrap();
            if let Some(cn) = cn {
                p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            }
            let key = rcgen::KeyPair::generate().unwrap();
            let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
            p.signed_by(&key, &issuer).unwrap().der().clone()
        }
    }

    fn certs_trusting(ca: &Ca) -> (Certs, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.cert.pem()).unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.s2s.ca_file = Some(ca_path);
        let tls = Tls::load(&config).unwrap();
        (Certs::new(&config, &tls).unwrap(), dir)
    }

    #[test]
    fn identities_come_from_the_subject_alt_name_only() {
        let ca = Ca::new();
        let (certs, _dir) = certs_trusting(&ca);
        let exact = ca.issue(&["example.org"], None);
        assert!(certs
            .verify(std::slice::from_ref(&exact), "example.org")
            .is_ok());
        assert!(certs.verify(&[exact], "example.com").is_err());
        // The wildcard covers exactly one left-most label.
        let wild = ca.issue(&["*.example.org"], None);
        assert!(certs
            .verify(std::slice::from_ref(&wild), "conference.example.org")
            .is_ok());
        assert!(certs
            .verify(std::slice::from_ref(&wild), "a.b.example.org")
            .is_err());
        assert!(certs.verify(&[wild], "example.org").is_err());
        // A common name that looks like the domain is no identity (no CN fallback).
        let cn_only = ca.issue(&["other.example"], Some("example.org"));
        assert!(certs.verify(&[cn_only], "example.org").is_err());
        // An issuer we do not trust.
        let stranger = Ca::new().issue(&["example.org"], None);
        assert!(certs.verify(&[stranger], "example.org").is_err());
        assert!(certs.verify(&[], "example.org").is_err());
    }
}
