//! The store's keys: one secret from configuration, from which HKDF derives a sealing key (AEAD, for the
//! OAuth pair) and a hashing key (HMAC-SHA256, for IDV session ids and request fingerprints). A database
//! copied without the secret yields no token and no session id.

use std::fmt;

use base64::{Engine, engine::general_purpose::STANDARD};
use ring::{aead, hkdf, hmac, rand::SecureRandom};
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error)]
pub enum StoreKeyError {
    #[error("must be base64 of at least 32 random bytes")]
    Malformed,
}

/// The derived keys. `Debug` shows nothing.
pub struct StoreKey {
    sealing: aead::LessSafeKey,
    hashing: hmac::Key,
    random: ring::rand::SystemRandom,
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreKey(<redacted>)")
    }
}

struct Length(usize);

impl hkdf::KeyType for Length {
    fn len(&self) -> usize {
        self.0
    }
}

impl StoreKey {
    pub fn from_secret(secret: &SecretString) -> Result<StoreKey, StoreKeyError> {
        let raw = STANDARD
            .decode(secret.expose_secret().trim())
            .map_err(|_| StoreKeyError::Malformed)?;
        if raw.len() < 32 {
            return Err(StoreKeyError::Malformed);
        }
        Ok(Self::derive(&raw))
    }

    /// A key that lives as long as the process (sandbox mode: its database is thrown away too).
    pub fn ephemeral() -> StoreKey {
        let mut raw = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut raw)
            .expect("the system's random source works");
        Self::derive(&raw)
    }

    fn derive(raw: &[u8]) -> StoreKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"onboarding-gateway store").extract(raw);
        let expand = |info: &[u8], len: usize| {
            let mut out = vec![0u8; len];
            prk.expand(&[info], Length(len))
                .and_then(|okm| okm.fill(&mut out))
                .expect("HKDF output of a valid length");
            out
        };
        let sealing = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &expand(b"sealing v1", 32))
            .expect("a 32-byte key");
        StoreKey {
            sealing: aead::LessSafeKey::new(sealing),
            hashing: hmac::Key::new(hmac::HMAC_SHA256, &expand(b"hashing v1", 32)),
            random: ring::rand::SystemRandom::new(),
        }
    }

    /// The keyed hash of `parts` (each length-prefixed, so no two part lists hash alike).
    pub fn hash(&self, domain: &str, parts: &[&[u8]]) -> [u8; 32] {
        let mut context = hmac::Context::with_key(&self.hashing);
        for part in std::iter::once(domain.as_bytes()).chain(parts.iter().copied()) {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(context.sign().as_ref());
        out
    }

    /// Encrypts and authenticates `plain`; `label` binds the ciphertext to its purpose.
    pub fn seal(&self, label: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .expect("the system's random source works");
        let mut sealed = plain.to_vec();
        self.sealing
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(label.as_bytes()),
                &mut sealed,
            )
            .expect("sealing cannot fail for in-memory data");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// The inverse of [`StoreKey::seal`]; `None` if it was sealed with another key or tampered with.
    pub fn open(&self, label: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < aead::NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(aead::NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = ciphertext.to_vec();
        let plain = self
            .sealing
            .open_in_place(nonce, aead::Aad::from(label.as_bytes()), &mut buffer)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> StoreKey {
        StoreKey::from_secret(&SecretString::from(STANDARD.encode([byte; 32]))).unwrap()
    }

    #[test]
    fn sealed_data_opens_only_with_the_same_key_and_label() {
        let sealed = key(1).seal("oauth", b"refresh-token");
        assert!(
            !sealed.windows(7).any(|w| w == b"refresh"),
            "nothing in clear"
        );
        assert_eq!(key(1).open("oauth", &sealed).unwrap(), b"refresh-token");
        assert!(key(2).open("oauth", &sealed).is_none());
        assert!(key(1).open("other", &sealed).is_none());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(key(1).open("oauth", &tampered).is_none());
        assert!(key(1).open("oauth", b"short").is_none());
    }

    #[test]
    fn hashes_are_keyed_and_unambiguous() {
        assert_eq!(key(1).hash("s", &[b"a"]), key(1).hash("s", &[b"a"]));
        assert_ne!(key(1).hash("s", &[b"a"]), key(2).hash("s", &[b"a"]));
        assert_ne!(
            key(1).hash("s", &[b"ab", b"c"]),
            key(1).hash("s", &[b"a", b"bc"])
        );
        assert_ne!(key(1).hash("s", &[b"a"]), key(1).hash("t", &[b"a"]));
    }

    #[test]
    fn short_or_garbled_secrets_are_refused() {
        for bad in ["", "not base64!", &STANDARD.encode([0u8; 16])] {
            assert!(
                StoreKey::from_secret(&SecretString::from(bad.to_owned())).is_err(),
                "{bad}"
            );
        }
        assert_eq!(format!("{:?}", key(1)), "StoreKey(<redacted>)");
    }
}
