//! Client side of SASL SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), without channel binding.

use anyhow::{anyhow, bail, Context, Result};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// The SCRAM variants the generator speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Mechanism {
    #[value(name = "SCRAM-SHA-1")]
    ScramSha1,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
}

impl Mechanism {
    /// The SASL mechanism name, as offered in `<mechanisms/>`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::ScramSha1 => {
                let mut m = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Mechanism::ScramSha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::ScramSha1 => Sha1::digest(data).to_vec(),
            Mechanism::ScramSha256 => Sha256::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Mechanism::ScramSha1 => {
                let mut out = vec![0; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out);
                out
            }
            Mechanism::ScramSha256 => {
                let mut out = vec![0; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

type SaltKey = (Mechanism, String, Vec<u8>, u32);

/// Remembers SaltedPassword per (mechanism, password, salt, iterations), as a real client may.
/// PBKDF2 dominates a client's login cost; when the server hands several accounts the same salt
/// the generator derives it once instead of once per login.
#[derive(Default)]
pub struct SaltCache {
    map: Mutex<HashMap<SaltKey, Vec<u8>>>,
}

impl SaltCache {
    fn get_or_derive(&self, mech: Mechanism, password: &str, salt: &[u8], iters: u32) -> Vec<u8> {
        let key = (mech, password.to_owned(), salt.to_vec(), iters);
        if let Some(v) = self.map.lock().expect("salt cache poisoned").get(&key) {
            return v.clone();
        }
        let v = mech.salted_password(password.as_bytes(), salt, iters);
        self.map
            .lock()
            .expect("salt cache poisoned")
            .insert(key, v.clone());
        v
    }
}

/// One SCRAM exchange: `client_first`, then `client_final` on the server-first message, then
/// `verify_server_final` on the server-final message.
pub struct ScramClient {
    mech: Mechanism,
    password: String,
    cnonce: String,
    client_first_bare: String,
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    pub fn new(mech: Mechanism, username: &str, password: &str, cnonce: &str) -> Self {
        ScramClient {
            mech,
            password: password.to_owned(),
            cnonce: cnonce.to_owned(),
            client_first_bare: format!("n={},r={}", escape_name(username), cnonce),
            server_signature: None,
        }
    }

    /// A client with a fresh random nonce (18 random bytes, base64).
    pub fn with_random_nonce(mech: Mechanism, username: &str, password: &str) -> Self {
        let mut raw = [0u8; 18];
        rand::thread_rng().fill_bytes(&mut raw);
        Self::new(mech, username, password, &B64.encode(raw))
    }

    /// The client-first message, with the `n,,` GS2 header (no channel binding, no authzid).
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// Computes the client-final message from the server-first message.
    pub fn client_final(
        &mut self,
        server_first: &str,
        cache: Option<&SaltCache>,
    ) -> Result<String> {
        let mut nonce = None;
        let mut salt = None;
        let mut iters = None;
        for (i, part) in server_first.split(',').enumerate() {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| anyhow!("malformed server-first attribute"))?;
            match key {
                "m" if i == 0 => bail!("server-first has a mandatory extension"),
                "r" => nonce = Some(value),
                "s" => salt = Some(B64.decode(value).context("server salt is not base64")?),
                "i" => iters = Some(value.parse::<u32>().context("bad iteration count")?),
                _ => {}
            }
        }
        let nonce = nonce.ok_or_else(|| anyhow!("server-first without nonce"))?;
        let salt = salt.ok_or_else(|| anyhow!("server-first without salt"))?;
        let iters = iters.ok_or_else(|| anyhow!("server-first without iteration count"))?;
        if !nonce.starts_with(&self.cnonce) || nonce.len() == self.cnonce.len() {
            bail!("server nonce does not extend the client nonce");
        }
        if iters == 0 {
            bail!("iteration count is zero");
        }

        let m = self.mech;
        let salted = match cache {
            Some(c) => c.get_or_derive(m, &self.password, &salt, iters),
            None => m.salted_password(self.password.as_bytes(), &salt, iters),
        };
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        // "biws" is base64("n,,"), the GS2 header sent in client-first.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = m.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = m.hmac(&salted, b"Server Key");
        self.server_signature = Some(m.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the server-final message (`v=...`), proving the server knows the password too.
    pub fn verify_server_final(&self, server_final: &str) -> Result<()> {
        let expected = self
            .server_signature
            .as_ref()
            .ok_or_else(|| anyhow!("server-final before client-final"))?;
        let first = server_final.split(',').next().unwrap_or_default();
        if let Some(err) = first.strip_prefix("e=") {
            bail!("server-final error: {err}");
        }
        let v = first
            .strip_prefix("v=")
            .ok_or_else(|| anyhow!("server-final without verifier"))?;
        let got = B64.decode(v).context("server verifier is not base64")?;
        if &got != expected {
            bail!("server signature mismatch");
        }
        Ok(())
    }
}

/// RFC 5802 §5.1 `saslname`: `=` and `,` are escaped.
fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7677_scram_sha_256_vector() {
        let mut c = ScramClient::new(
            Mechanism::ScramSha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO",
        );
        assert_eq!(c.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let cache = SaltCache::default();
        let fin = c.client_final(server_first, Some(&cache)).unwrap();
        assert_eq!(
            fin,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.verify_server_final("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(c
            .verify_server_final("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .is_err());
        // A second exchange with the same salt uses the cache and gets the same proof.
        let mut again = ScramClient::new(
            Mechanism::ScramSha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO",
        );
        assert_eq!(again.client_final(server_first, Some(&cache)).unwrap(), fin);
        assert_eq!(cache.map.lock().unwrap().len(), 1);
    }

    #[test]
    fn rfc5802_scram_sha_1_vector() {
        let mut c = ScramClient::new(
            Mechanism::ScramSha1,
            "user",
            "pencil",
            "fyko+d2lbbFgONRv9qkxdawL",
        );
        let fin = c
            .client_final(
                "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
                None,
            )
            .unwrap();
        assert_eq!(
            fin,
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        c.verify_server_final("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")
            .unwrap();
    }

    #[test]
    fn rejects_bad_server_first_and_errors() {
        let mut c = ScramClient::new(Mechanism::ScramSha256, "u", "p", "abc");
        assert!(c.client_final("r=xyz123,s=QSXC,i=4096", None).is_err());
        assert!(c.client_final("r=abc,s=QSXC,i=4096", None).is_err());
        assert!(c.client_final("m=ext,r=abc1,s=QSXC,i=4096", None).is_err());
        assert!(c.client_final("r=abc1,s=QSXC", None).is_err());
        c.client_final("r=abc1,s=QSXC,i=1", None).unwrap();
        let e = c.verify_server_final("e=invalid-proof").unwrap_err();
        assert!(e.to_string().contains("invalid-proof"));
    }

    #[test]
    fn escapes_username() {
        let c = ScramClient::new(Mechanism::ScramSha1, "a=b,c", "p", "n");
        assert_eq!(c.client_first(), "n,,n=a=3Db=2Cc,r=n");
    }
}
