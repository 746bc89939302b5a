//! SCRAM server side (RFC 5802, RFC 7677) with channel binding (RFC 5929, RFC 9266), sans-IO.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use rookery_core::storage::{Credentials, ScramKeys};
use sha1::Sha1;
use sha2::{Digest, Sha256};

pub const DEFAULT_ITERATIONS: u32 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
}

impl Hash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => {
                let mut m = Hmac::<Sha1>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Hash::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn h(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => Sha1::digest(data).to_vec(),
            Hash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Hash::Sha1 => {
                let mut out = [0u8; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), salt, iterations, &mut out);
                out.to_vec()
            }
            Hash::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }

    pub fn keys(self, password: &str, salt: &[u8], iterations: u32) -> ScramKeys {
        let salted = self.salted_password(password, salt, iterations);
        let client_key = self.hmac(&salted, b"Client Key");
        ScramKeys {
            stored_key: self.h(&client_key),
            server_key: self.hmac(&salted, b"Server Key"),
        }
    }
}

/// Derives what is stored for a new password: salted keys for both hashes, no password.
pub fn derive_credentials(password: &str) -> Credentials {
    let mut salt = vec![0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    derive_with_salt(password, salt, DEFAULT_ITERATIONS)
}

pub fn derive_with_salt(password: &str, salt: Vec<u8>, iterations: u32) -> Credentials {
    Credentials {
        sha1: Hash::Sha1.keys(password, &salt, iterations),
        sha256: Hash::Sha256.keys(password, &salt, iterations),
        salt,
        iterations,
    }
}

/// Checks a plaintext password (SASL PLAIN, XEP-0077 checks) against stored keys.
pub fn verify_password(creds: &Credentials, password: &str) -> bool {
    let k = Hash::Sha256.keys(password, &creds.salt, creds.iterations);
    constant_time_eq(&k.stored_key, &creds.sha256.stored_key)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Channel binding data the TLS layer offers for this connection.
#[derive(Clone, Debug, Default)]
pub struct ChannelBindings {
    pub tls_exporter: Option<Vec<u8>>,
    pub tls_server_end_point: Option<Vec<u8>>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message")]
    Malformed,
    #[error("unsupported channel binding")]
    UnsupportedBinding,
    #[error("channel binding mismatch")]
    BindingMismatch,
    #[error("authentication failed")]
    NotAuthorized,
}

/// What the client-first message asked for.
#[derive(Debug)]
pub struct ClientFirst {
    pub username: String,
    pub authzid: Option<String>,
    gs2_header: String,
    cb_type: Option<String>,
    bare: String,
    client_nonce: String,
}

/// Parses the client-first message. `plus` says whether a -PLUS mechanism was selected and
/// `plus_offered` whether the server advertised any -PLUS mechanism (for downgrade detection).
pub fn parse_client_first(
    msg: &str,
    plus: bool,
    plus_offered: bool,
) -> Result<ClientFirst, ScramError> {
    let mut parts = msg.splitn(3, ',');
    let flag = parts.next().ok_or(ScramError::Malformed)?;
    let authz = parts.next().ok_or(ScramError::Malformed)?;
    let bare = parts.next().ok_or(ScramError::Malformed)?;
    let cb_type = match flag {
        "n" if !plus => None,
        // The client supports binding but believes we do not: a downgrade if we offered it.
        "y" if !plus => {
            if plus_offered {
                return Err(ScramError::BindingMismatch);
            }
            None
        }
        f if plus && f.starts_with("p=") => Some(f[2..].to_string()),
        _ => return Err(ScramError::Malformed),
    };
    let authzid = match authz {
        "" => None,
        a => Some(unescape(
            a.strip_prefix("a=").ok_or(ScramError::Malformed)?,
        )?),
    };
    let mut username = None;
    let mut nonce = None;
    for attr in bare.split(',') {
        if let Some(v) = attr.strip_prefix("n=") {
            username = Some(unescape(v)?);
        } else if let Some(v) = attr.strip_prefix("r=") {
            nonce = Some(v.to_string());
        } else if attr.starts_with("m=") {
            return Err(ScramError::Malformed);
        }
    }
    let client_nonce = nonce
        .filter(|n| !n.is_empty())
        .ok_or(ScramError::Malformed)?;
    Ok(ClientFirst {
        username: username
            .filter(|u| !u.is_empty())
            .ok_or(ScramError::Malformed)?,
        authzid,
        gs2_header: format!("{flag},{authz},"),
        cb_type,
        bare: bare.to_string(),
        client_nonce,
    })
}

fn unescape(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The server's half of one SCRAM exchange after the client-first message.
pub struct ScramServer {
    hash: Hash,
    first: ClientFirst,
    keys: Option<ScramKeys>,
    cb_data: Vec<u8>,
    nonce: String,
    server_first: String,
}

impl ScramServer {
    /// `creds` is None for an unknown user: the exchange continues with made-up values so the
    /// failure looks the same as a wrong password.
    pub fn new(
        hash: Hash,
        first: ClientFirst,
        creds: Option<&Credentials>,
        bindings: &ChannelBindings,
    ) -> Result<Self, ScramError> {
        let cb_data = match first.cb_type.as_deref() {
            None => Vec::new(),
            Some("tls-exporter") => bindings
                .tls_exporter
                .clone()
                .ok_or(ScramError::UnsupportedBinding)?,
            Some("tls-server-end-point") => bindings
                .tls_server_end_point
                .clone()
                .ok_or(ScramError::UnsupportedBinding)?,
            Some(_) => return Err(ScramError::UnsupportedBinding),
        };
        let mut rnd = [0u8; 18];
        rand::thread_rng().fill_bytes(&mut rnd);
        let nonce = format!("{}{}", first.client_nonce, B64.encode(rnd));
        let (salt, iterations, keys) = match creds {
            Some(c) => (
                c.salt.clone(),
                c.iterations,
                Some(match hash {
                    Hash::Sha1 => c.sha1.clone(),
                    Hash::Sha256 => c.sha256.clone(),
                }),
            ),
            None => {
                // Deterministic per username so probing twice does not reveal non-existence.
                let salt = hash.h(format!("rookery-fake-salt:{}", first.username).as_bytes())[..16]
                    .to_vec();
                (salt, DEFAULT_ITERATIONS, None)
            }
        };
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
        Ok(ScramServer {
            hash,
            first,
            keys,
            cb_data,
            nonce,
            server_first,
        })
    }

    pub fn server_first(&self) -> &str {
        &self.server_first
    }

    pub fn username(&self) -> &str {
        &self.first.username
    }

    pub fn authzid(&self) -> Option<&str> {
        self.first.authzid.as_deref()
    }

    /// Verifies the client-final message; on success returns the server-final message.
    pub fn finish(&self, client_final: &str) -> Result<String, ScramError> {
        let (without_proof, proof) = client_final
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed)?;
        let mut cbind = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                cbind = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        let cbind = B64
            .decode(cbind.ok_or(ScramError::Malformed)?)
            .map_err(|_| ScramError::Malformed)?;
        let mut expected = self.first.gs2_header.as_bytes().to_vec();
        expected.extend_from_slice(&self.cb_data);
        if !constant_time_eq(&cbind, &expected) {
            return Err(ScramError::BindingMismatch);
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::NotAuthorized);
        }
        let proof = B64.decode(proof).map_err(|_| ScramError::Malformed)?;
        let keys = self.keys.as_ref().ok_or(ScramError::NotAuthorized)?;
        let auth_message = format!(
            "{},{},{}",
            self.first.bare, self.server_first, without_proof
        );
        let client_sig = self.hash.hmac(&keys.stored_key, auth_message.as_bytes());
        if proof.len() != client_sig.len() {
            return Err(ScramError::NotAuthorized);
        }
        let client_key: Vec<u8> = proof.iter().zip(&client_sig).map(|(a, b)| a ^ b).collect();
        if !constant_time_eq(&self.hash.h(&client_key), &keys.stored_key) {
            return Err(ScramError::NotAuthorized);
        }
        let server_sig = self.hash.hmac(&keys.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_sig)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3 test vector with the nonce fixed by hand.
    #[test]
    fn rfc7677_sha256_vector() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let creds = derive_with_salt("pencil", salt, 4096);
        let first = parse_client_first("n,,n=user,r=rOprNGfwEbeRWgbNEkqO", false, false).unwrap();
        let mut s = ScramServer::new(
            Hash::Sha256,
            first,
            Some(&creds),
            &ChannelBindings::default(),
        )
        .unwrap();
        s.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        s.server_first = format!("r={},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", s.nonce);
        let fin = s
            .finish("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(fin, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    /// RFC 5802 §5 SHA-1 vector.
    #[test]
    fn rfc5802_sha1_vector() {
        let salt = B64.decode("QSXCR+Q6sek8bf92").unwrap();
        let creds = derive_with_salt("pencil", salt, 4096);
        let first =
            parse_client_first("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL", false, false).unwrap();
        let mut s =
            ScramServer::new(Hash::Sha1, first, Some(&creds), &ChannelBindings::default()).unwrap();
        s.nonce = "fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j".into();
        s.server_first = format!("r={},s=QSXCR+Q6sek8bf92,i=4096", s.nonce);
        let fin = s
            .finish("c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")
            .unwrap();
        assert_eq!(fin, "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
    }

    #[test]
    fn wrong_proof_and_unknown_user_fail_alike() {
        let creds = derive_credentials("secret");
        let first = parse_client_first("n,,n=u,r=abc", false, false).unwrap();
        let s = ScramServer::new(
            Hash::Sha256,
            first,
            Some(&creds),
            &ChannelBindings::default(),
        )
        .unwrap();
        let r = s.server_first().split(',').next().unwrap().to_string();
        let bad = format!("c=biws,{r},p={}", B64.encode([0u8; 32]));
        assert_eq!(s.finish(&bad), Err(ScramError::NotAuthorized));
        let first = parse_client_first("n,,n=ghost,r=abc", false, false).unwrap();
        let s = ScramServer::new(Hash::Sha256, first, None, &ChannelBindings::default()).unwrap();
        let r = s.server_first().split(',').next().unwrap().to_string();
        assert_eq!(
            s.finish(&format!("c=biws,{r},p={}", B64.encode([0u8; 32]))),
            Err(ScramError::NotAuthorized)
        );
    }

    #[test]
    fn channel_binding_is_checked() {
        let cb = ChannelBindings {
            tls_exporter: Some(vec![1, 2, 3]),
            tls_server_end_point: None,
        };
        assert!(matches!(
            parse_client_first("y,,n=u,r=x", false, true),
            Err(ScramError::BindingMismatch)
        ));
        let first = parse_client_first("p=tls-unique,,n=u,r=x", true, true).unwrap();
        assert!(matches!(
            ScramServer::new(Hash::Sha256, first, None, &cb),
            Err(ScramError::UnsupportedBinding)
        ));
        let first = parse_client_first("p=tls-exporter,,n=u,r=x", true, true).unwrap();
        let s = ScramServer::new(Hash::Sha256, first, None, &cb).unwrap();
        let r = s.server_first().split(',').next().unwrap().to_string();
        // c= carries the gs2 header without the binding data: mismatch.
        let msg = format!("c={},{r},p=AAAA", B64.encode("p=tls-exporter,,"));
        assert_eq!(s.finish(&msg), Err(ScramError::BindingMismatch));
    }

    #[test]
    fn saslname_unescaping() {
        let f = parse_client_first("n,a=x=3Dy,n=a=2Cb,r=1", false, false).unwrap();
        assert_eq!(f.username, "a,b");
        assert_eq!(f.authzid.as_deref(), Some("x=y"));
        assert!(parse_client_first("n,,n=a=ZZ,r=1", false, false).is_err());
    }

    #[test]
    fn plain_verification_uses_stored_keys() {
        let c = derive_credentials("hunter2");
        assert!(verify_password(&c, "hunter2"));
        assert!(!verify_password(&c, "hunter3"));
    }
}
