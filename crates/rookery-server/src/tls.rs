//! TLS for c2s (RFC 6120 §5, XEP-0368): certificates per host (self-signed on first start when none
//! is configured), SNI selection, and the channel-binding data SCRAM-PLUS needs (RFC 9266, 5929).

use crate::scram::ChannelBindings;
use anyhow::Context;
use rookery_core::config::Config;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

#[derive(Debug)]
struct CertMap {
    by_host: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl CertMap {
    fn get(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        server_name
            .and_then(|n| self.by_host.get(&n.to_ascii_lowercase()))
            .unwrap_or(&self.default)
    }
}

/// The hosts' certificates, replaced whole on reload: handshakes after a reload get the new
/// ones, connections already up keep theirs.
#[derive(Debug)]
struct HostCerts(arc_swap::ArcSwap<CertMap>);

impl ResolvesServerCert for HostCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load().get(hello.server_name()).clone())
    }
}

/// Acceptors for STARTTLS, direct TLS and HTTPS, built once at start over certificates that
/// can be reloaded.
#[derive(Clone)]
pub struct Tls {
    pub starttls: TlsAcceptor,
    pub direct: TlsAcceptor,
    pub https: TlsAcceptor,
    certs: Arc<HostCerts>,
}

impl Tls {
    pub fn load(config: &Config) -> anyhow::Result<Tls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = Arc::new(HostCerts(arc_swap::ArcSwap::from_pointee(Self::read(
            config, &provider,
        )?)));
        let build = |alpn: &[&[u8]]| -> anyhow::Result<TlsAcceptor> {
            let mut cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
                .with_no_client_auth()
                .with_cert_resolver(certs.clone());
            cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(TlsAcceptor::from(Arc::new(cfg)))
        };
        Ok(Tls {
            starttls: build(&[])?,
            direct: build(&[b"xmpp-client"])?,
            https: build(&[b"http/1.1"])?,
            certs,
        })
    }

    /// Reads the hosts' certificates again (SIGHUP): on success every listener's next
    /// handshake shows them; on failure nothing changes.
    pub fn reload(&self, config: &Config) -> anyhow::Result<()> {
        let provider = rustls::crypto::ring::default_provider();
        self.certs.0.store(Arc::new(Self::read(config, &provider)?));
        Ok(())
    }

    /// Each host's certificate: configured, or self-signed (made on first use).
    fn read(config: &Config, provider: &rustls::crypto::CryptoProvider) -> anyhow::Result<CertMap> {
        let mut by_host = HashMap::new();
        for host in &config.hosts {
            let (cert_path, key_path) =
                match config.tls.certificates.iter().find(|c| &c.host == host) {
                    Some(c) => (c.cert.clone(), c.key.clone()),
                    None => {
                        let dir = config.data_dir.join("certs");
                        let cert = dir.join(format!("{host}.crt"));
                        let key = dir.join(format!("{host}.key"));
                        if !cert.exists() || !key.exists() {
                            generate_self_signed(host, &cert, &key)?;
                        }
                        (cert, key)
                    }
                };
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
                .with_context(|| format!("reading certificate {}", cert_path.display()))?
                .collect::<Result<_, _>>()
                .with_context(|| format!("parsing certificate {}", cert_path.display()))?;
            anyhow::ensure!(
                !chain.is_empty(),
                "no certificate in {}",
                cert_path.display()
            );
            let key = PrivateKeyDer::from_pem_file(&key_path)
                .with_context(|| format!("reading key {}", key_path.display()))?;
            let signing = provider
                .key_provider
                .load_private_key(key)
                .with_context(|| format!("loading key {}", key_path.display()))?;
            by_host.insert(
                host.to_ascii_lowercase(),
                Arc::new(CertifiedKey::new(chain, signing)),
            );
        }
        let default = by_host[&config.hosts[0].to_ascii_lowercase()].clone();
        Ok(CertMap { by_host, default })
    }

    /// The certificate this server shows as `domain`: the host's own, or for a service domain
    /// (`conference.<host>`) its host's, whose self-signed certificate also names `*.<host>`.
    pub fn key_for(&self, domain: &str) -> Arc<CertifiedKey> {
        let domain = domain.to_ascii_lowercase();
        let certs = self.certs.0.load();
        if let Some(k) = certs.by_host.get(&domain) {
            return k.clone();
        }
        certs
            .by_host
            .iter()
            .find(|(host, _)| {
                domain
                    .strip_suffix(host.as_str())
                    .is_some_and(|p| p.ends_with('.'))
            })
            .map(|(_, k)| k.clone())
            .unwrap_or_else(|| certs.default.clone())
    }

    /// The per-host certificate choice (SNI), for other listeners' TLS configurations.
    pub fn resolver(&self) -> Arc<dyn ResolvesServerCert> {
        self.certs.clone()
    }

    /// Channel bindings of an established server connection.
    pub fn bindings(&self, conn: &rustls::ServerConnection) -> ChannelBindings {
        // tls-exporter is only sound where the handshake binds the master secret: TLS 1.3 here.
        let tls_exporter = (conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3))
            .then(|| {
                conn.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
                    .ok()
                    .map(|k| k.to_vec())
            })
            .flatten();
        let certs = self.certs.0.load();
        let cert = certs.get(conn.server_name());
        // RFC 5929 §4.1: the certificate hash, SHA-256 for SHA-1/SHA-256 signed certificates.
        let tls_server_end_point = cert
            .cert
            .first()
            .map(|c| Sha256::digest(c.as_ref()).to_vec());
        ChannelBindings {
            tls_exporter,
            tls_server_end_point,
        }
    }
}

fn generate_self_signed(host: &str, cert: &Path, key: &Path) -> anyhow::Result<()> {
    if let Some(dir) = cert.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let names = vec![host.to_string(), format!("*.{host}")];
    let ck = rcgen::generate_simple_self_signed(names).context("generating certificate")?;
    std::fs::write(cert, ck.cert.pem())?;
    write_private(key, ck.signing_key.serialize_pem().as_bytes())?;
    tracing::info!(host, path = %cert.display(), "generated a self-signed certificate");
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(data)
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        Tls::load(&config).unwrap();
        let crt = dir.path().join("certs/localhost.crt");
        let before = std::fs::read(&crt).unwrap();
        Tls::load(&config).unwrap();
        assert_eq!(std::fs::read(&crt).unwrap(), before);
    }
}
