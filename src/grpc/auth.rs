//! Who is calling, and may they: a tower layer in front of every RPC.
//!
//! A caller proves its identity with a client certificate (mutual TLS; the identity is the certificate's
//! first URI SAN, else its first DNS SAN) or a JWT bearer token (verified as RFC 8725 asks: an explicit
//! algorithm allow-list, a key used only with an algorithm of its type, issuer, audience, expiry and
//! not-before). The identity then needs a permission for the RPC. The layer puts the identity into the
//! request as a [`Caller`], which rate limits, idempotency keys, ownership and audit records use.
//!
//! Health needs no identity (Kubernetes' probes have none); reflection needs any identity. Nothing a
//! caller sent — a token, a claim's value — goes into an error or a log line.

use std::{
    collections::{HashMap, HashSet},
    str::FromStr,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation, decode, decode_header,
    errors::ErrorKind as JwtErrorKind,
    jwk::{Jwk, PublicKeyUse},
};
use serde_json::Value;
use tonic::body::Body;
use tower::{Layer, Service};

use super::{
    admission::Caller,
    status::to_status,
    tls::{CertificateIdentity, TlsPeer},
};
use crate::{
    config::{AuthConfig, AuthMethod, reload::Reloading},
    domain::{
        Error,
        error::{ErrorKind, Reason},
    },
};

/// The identity every caller has when callers are not authenticated.
pub const ANONYMOUS: &str = "anonymous";

const API_PREFIX: &str = "/connectpay.onboarding.v1.Onboarding/";

/// The keys of a JSON Web Key Set, ready to verify with.
pub struct KeySet {
    keys: Vec<VerificationKey>,
}

struct VerificationKey {
    id: Option<String>,
    /// The key's own `alg`, when it names one: then it is used with that algorithm only.
    algorithm: Option<Algorithm>,
    key: DecodingKey,
}

impl KeySet {
    /// Parses a JWKS document. Keys this gateway cannot use for signatures (encryption keys, unknown
    /// types) are skipped; a set with no usable key is an error.
    pub fn parse(document: &[u8]) -> Result<KeySet, String> {
        let document: Value =
            serde_json::from_slice(document).map_err(|e| format!("not JSON: {e}"))?;
        let entries = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("not a JWK set: no \"keys\" array")?;
        let mut keys = Vec::new();
        for entry in entries {
            let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
                continue;
            };
            if matches!(
                jwk.common.public_key_use,
                Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
            ) {
                continue;
            }
            let algorithm = match jwk.common.key_algorithm {
                // An algorithm that is not a JWS one (e.g. RSA-OAEP) makes the key useless here.
                Some(named) => match Algorithm::from_str(&named.to_string()) {
                    Ok(algorithm) => Some(algorithm),
                    Err(_) => continue,
                },
                None => None,
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            keys.push(VerificationKey {
                id: jwk.common.key_id.clone(),
                algorithm,
                key,
            });
        }
        if keys.is_empty() {
            return Err("no usable signature verification key in the set".into());
        }
        Ok(KeySet { keys })
    }
}

/// Verifies bearer tokens against a (reloading) key set and fixed expectations.
pub struct JwtVerifier {
    keys: Arc<Reloading<KeySet>>,
    algorithms: Vec<Algorithm>,
    issuer: String,
    audience: String,
    identity_claim: String,
    leeway: Duration,
}

impl JwtVerifier {
    pub fn new(keys: Arc<Reloading<KeySet>>, config: &crate::config::JwtConfig) -> Self {
        JwtVerifier {
            keys,
            algorithms: config
                .algorithms
                .iter()
                .filter_map(|name| Algorithm::from_str(name).ok())
                .collect(),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            identity_claim: config.identity_claim.clone(),
            leeway: config.leeway,
        }
    }

    /// The identity the token proves.
    pub fn verify(&self, token: &str) -> Result<String, Refusal> {
        // `decode_header` refuses `alg: none` and names outside the JWS registry.
        let header = decode_header(token).map_err(|_| Refusal::invalid("malformed token"))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(Refusal::invalid("algorithm not allowed"));
        }
        let keys = self.keys.current();
        let candidates: Vec<&VerificationKey> = keys
            .keys
            .iter()
            .filter(|k| match (&header.kid, &k.id) {
                (Some(wanted), Some(id)) => wanted == id,
                (Some(_), None) => false,
                (None, _) => true,
            })
            .filter(|k| k.key.family() == header.alg.family())
            .filter(|k| k.algorithm.is_none_or(|alg| alg == header.alg))
            .collect();
        if candidates.is_empty() {
            return Err(Refusal::invalid("no key for the token"));
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway.as_secs();
        let mut refusal = Refusal::invalid("bad signature");
        for candidate in candidates {
            match decode::<serde_json::Map<String, Value>>(token, &candidate.key, &validation) {
                Ok(data) => {
                    return match data.claims.get(&self.identity_claim) {
                        Some(Value::String(identity)) if !identity.is_empty() => {
                            Ok(identity.clone())
                        }
                        _ => Err(Refusal::invalid("the identity claim is missing")),
                    };
                }
                // Another key with the same id and type may still verify it.
                Err(e) if matches!(e.kind(), JwtErrorKind::InvalidSignature) => {}
                Err(e) => {
                    refusal = match e.kind() {
                        JwtErrorKind::ExpiredSignature => {
                            Refusal::new(Reason::CredentialsExpired, "expired")
                        }
                        JwtErrorKind::ImmatureSignature => {
                            Refusal::new(Reason::CredentialsExpired, "not valid yet")
                        }
                        JwtErrorKind::InvalidAudience => {
                            Refusal::new(Reason::CredentialsWrongAudience, "wrong audience")
                        }
                        JwtErrorKind::InvalidIssuer => {
                            Refusal::new(Reason::CredentialsWrongAudience, "wrong issuer")
                        }
                        JwtErrorKind::MissingRequiredClaim(_) => {
                            Refusal::invalid("a required claim is missing")
                        }
                        _ => Refusal::invalid("invalid token"),
                    };
                    break;
                }
            }
        }
        Err(refusal)
    }
}

/// Why a caller was refused: the reason it is told, and a value-free note for the operator's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub note: &'static str,
}

impl Refusal {
    fn new(reason: Reason, note: &'static str) -> Self {
        Refusal { reason, note }
    }

    fn invalid(note: &'static str) -> Self {
        Refusal::new(Reason::CredentialsInvalid, note)
    }

    fn into_error(self) -> Error {
        let kind = if self.reason == Reason::PermissionDenied {
            ErrorKind::PermissionDenied
        } else {
            ErrorKind::Unauthenticated
        };
        Error::new(kind, self.reason)
    }
}

/// Authentication and authorisation, as configured.
pub struct Authenticator {
    /// No authentication: every caller is [`ANONYMOUS`] with every permission.
    open: bool,
    mtls: bool,
    jwt: Option<JwtVerifier>,
    permissions: HashMap<String, HashSet<String>>,
}

impl Authenticator {
    /// Authenticates no one: for `serve --sandbox` and `auth.allow_unauthenticated`.
    pub fn open() -> Self {
        Authenticator {
            open: true,
            mtls: false,
            jwt: None,
            permissions: HashMap::new(),
        }
    }

    pub fn new(config: &AuthConfig, jwt: Option<JwtVerifier>) -> Self {
        Authenticator {
            open: config.methods.is_empty(),
            mtls: config.methods.contains(&AuthMethod::Mtls),
            jwt: jwt.filter(|_| config.methods.contains(&AuthMethod::Jwt)),
            permissions: config
                .permissions
                .iter()
                .map(|(identity, rpcs)| (identity.clone(), rpcs.iter().cloned().collect()))
                .collect(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Who calls: from the bearer token when the call carries one (and tokens are accepted), else from
    /// the connection's verified client certificate.
    pub fn authenticate<B>(&self, request: &http::Request<B>) -> Result<String, Refusal> {
        if self.open {
            return Ok(ANONYMOUS.to_owned());
        }
        if let Some(jwt) = &self.jwt
            && let Some(value) = request.headers().get(http::header::AUTHORIZATION)
        {
            let token = value
                .to_str()
                .ok()
                .and_then(bearer)
                .ok_or_else(|| Refusal::invalid("not a bearer token"))?;
            return jwt.verify(token);
        }
        if self.mtls {
            let presented = request
                .extensions()
                .get::<TlsPeer>()
                .and_then(|peer| peer.certificate_identity.clone());
            match presented {
                Some(CertificateIdentity::Named(identity)) => return Ok(identity),
                Some(CertificateIdentity::Unnamed) => {
                    return Err(Refusal::invalid(
                        "the client certificate names no identity (URI or DNS SAN)",
                    ));
                }
                None => {}
            }
        }
        Err(Refusal::new(Reason::CredentialsMissing, "no credentials"))
    }

    /// Whether `identity` may call `rpc`.
    pub fn permits(&self, identity: &str, rpc: &str) -> bool {
        self.open
            || self
                .permissions
                .get(identity)
                .is_some_and(|rpcs| rpcs.contains(rpc))
    }
}

/// The token of an `authorization: Bearer <token>` value (the scheme is case-insensitive, RFC 7235).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[derive(Clone)]
pub struct AuthLayer {
    authenticator: Arc<Authenticator>,
}

impl AuthLayer {
    pub fn new(authenticator: Arc<Authenticator>) -> Self {
        AuthLayer { authenticator }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            authenticator: self.authenticator.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
}

impl<S, B> Service<http::Request<B>> for Auth<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        if path.starts_with("/grpc.health.v1.Health/") {
            return Box::pin(self.inner.call(request));
        }
        let rpc = path.strip_prefix(API_PREFIX).map(str::to_owned);
        let identity = match self.authenticator.authenticate(&request) {
            Ok(identity) => identity,
            Err(refusal) => {
                tracing::info!(rpc = rpc.as_deref().unwrap_or(""), reason = %refusal.reason, note = refusal.note, "caller not authenticated");
                return refuse(refusal);
            }
        };
        if let Some(rpc) = &rpc
            && !self.authenticator.permits(&identity, rpc)
        {
            tracing::info!(caller = %identity, rpc, "caller not permitted");
            return refuse(Refusal::new(Reason::PermissionDenied, "not permitted"));
        }
        request.extensions_mut().insert(Caller(identity));
        Box::pin(self.inner.call(request))
    }
}

fn refuse<E: Send + 'static>(
    refusal: Refusal,
) -> BoxFuture<'static, Result<http::Response<Body>, E>> {
    let response = to_status(&refusal.into_error()).into_http();
    Box::pin(futures::future::ready(Ok(response)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn key_sets_skip_what_cannot_verify_and_refuse_an_empty_one() {
        let set = br#"{"keys": [
            {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA", "kid": "h", "alg": "HS256"},
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB", "kid": "e"},
            {"kty": "XYZ", "kid": "unknown"},
            {"kty": "oct", "k": "AAAA", "alg": "RSA-OAEP"}
        ]}"#;
        let keys = KeySet::parse(set).unwrap();
        assert_eq!(keys.keys.len(), 1);
        assert_eq!(keys.keys[0].id.as_deref(), Some("h"));
        assert!(KeySet::parse(br#"{"keys": []}"#).is_err());
        assert!(KeySet::parse(b"not json").is_err());
        let e = KeySet::parse(br#"{"keyz": "s3cr3t"}"#).err().unwrap();
        assert!(!e.contains("s3cr3t"), "{e}");
    }
}
