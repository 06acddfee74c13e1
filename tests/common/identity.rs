//! Identities for tests: certificate authorities issuing server and client certificates with chosen
//! subject alternative names, and JWT signing keys with their JWKS.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::json;
use tonic::transport::Identity;

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "onboarding-gateway";

/// A certificate authority for the test, and the files it writes.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate with these subject alternative names; returns (certificate, key) PEM.
    pub fn leaf(&self, names: Vec<SanType>, usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = names;
        params.distinguished_name.push(DnType::CommonName, "test");
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn server(&self) -> (String, String) {
        self.leaf(
            vec![SanType::DnsName("localhost".try_into().unwrap())],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    pub fn client_uri(&self, uri: &str) -> Identity {
        let (cert, key) = self.leaf(
            vec![SanType::URI(uri.try_into().unwrap())],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Identity::from_pem(cert, key)
    }
}

/// A signing key and its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: serde_json::Value,
}

impl SigningKey {
    pub fn es256(kid: &str) -> SigningKey {
        let key = KeyPair::generate().unwrap(); // P-256
        let point = key.public_key_raw(); // 0x04 | x | y
        SigningKey {
            kid: kid.into(),
            encoding: EncodingKey::from_ec_der(&key.serialize_der()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            }),
        }
    }

    pub fn sign(&self, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn claims(subject: &str) -> serde_json::Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "exp": now() + 300, "iat": now()})
}

pub fn jwks(keys: &[&SigningKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}
