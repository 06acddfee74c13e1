//! Who may deliver a notification: a source address in ConnectPay's published list, and one of the
//! accepted secret tokens. Both are checked from the headers alone, before the body is read.

use std::{net::IpAddr, sync::Arc};

use http::HeaderMap;
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::config::reload::Reloading;

pub struct Gate {
    /// One, or two during a rotation; read again from the tokens file when it changes, so each request is
    /// checked against the tokens of the moment it arrives.
    tokens: Arc<Reloading<Vec<SecretString>>>,
    allowed_sources: Vec<IpNet>,
    /// Proxies (e.g. the ingress controller) whose `X-Forwarded-For` entries are believed.
    trusted_proxies: Vec<IpNet>,
}

fn within(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|net| net.contains(&ip))
}

impl Gate {
    pub fn new(
        tokens: Arc<Reloading<Vec<SecretString>>>,
        allowed_sources: Vec<IpNet>,
        trusted_proxies: Vec<IpNet>,
    ) -> Self {
        Gate {
            tokens,
            allowed_sources,
            trusted_proxies,
        }
    }

    /// The address the request really came from: the socket peer, unless the peer is a trusted proxy, in
    /// which case the nearest untrusted entry of `X-Forwarded-For`, read from the right (entries further left
    /// were written by whoever sent the request, and prove nothing).
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !within(&self.trusted_proxies, peer) {
            return peer;
        }
        // Several headers read as one list, in order. A value that is not even text (bytes outside ASCII)
        // is one garbled entry: it stops the walk like any other, instead of vanishing and letting an entry
        // further left, which the sender may have written, be believed.
        let entries: Vec<Option<&str>> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|v| match v.to_str() {
                Ok(v) => v.split(',').map(|e| Some(e.trim())).collect::<Vec<_>>(),
                Err(_) => vec![None],
            })
            .collect();
        for entry in entries.iter().rev() {
            match entry.and_then(|e| e.parse::<IpAddr>().ok()) {
                Some(ip) if within(&self.trusted_proxies, ip.to_canonical()) => continue,
                Some(ip) => return ip.to_canonical(),
                // A garbled entry from a trusted proxy's side: trust nothing further left.
                None => return peer,
            }
        }
        peer
    }

    pub fn source_allowed(&self, client: IpAddr) -> bool {
        within(&self.allowed_sources, client)
    }

    /// Compares in constant time against every accepted token (after the length check, which reveals only
    /// the length, already public: 36 characters). Exact bytes: ConnectPay's token is a random string in
    /// which `a` and `A` are different characters, so a token in another case is another token.
    pub fn token_matches(&self, presented: Option<&[u8]>) -> bool {
        let Some(presented) = presented else {
            return false;
        };
        let tokens = self.tokens.current();
        tokens.iter().fold(false, |matched, token| {
            let token = token.expose_secret().as_bytes();
            let same = token.len() == presented.len() && bool::from(token.ct_eq(presented));
            matched | same
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate::new(
            Reloading::fixed(vec![
                SecretString::from("current-token-0123456789abcdefghijkl"),
                SecretString::from("next-token-0123456789abcdefghijklmno"),
            ]),
            vec![
                "34.254.62.56/32".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap(),
            ],
            vec!["192.168.1.0/24".parse().unwrap()],
        )
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", v.parse().unwrap());
        }
        headers
    }

    #[test]
    fn tokens_match_exactly() {
        let g = gate();
        assert!(g.token_matches(Some(b"current-token-0123456789abcdefghijkl")));
        assert!(g.token_matches(Some(b"next-token-0123456789abcdefghijklmno")));
        for wrong in [
            &b""[..],
            b"c",
            b"current-token-0123456789abcdefghijk",
            b"current-token-0123456789abcdefghijklm",
            b"CURRENT-TOKEN-0123456789ABCDEFGHIJKL",
            b"Current-token-0123456789abcdefghijkl",
            b"current-token-0123456789abcdefghij\xc4\x85",
            b"current-token-0123456789abcdefghijk\xff",
            &[b'c'; 256 * 1024][..],
        ] {
            assert!(!g.token_matches(Some(wrong)), "{wrong:?}");
        }
        assert!(!g.token_matches(None));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies_and_read_from_the_right() {
        let g = gate();
        let untrusted: IpAddr = "203.0.113.9".parse().unwrap();
        let proxy: IpAddr = "192.168.1.5".parse().unwrap();
        // A sender's own claim counts for nothing.
        assert_eq!(
            g.client_address(untrusted, &xff(&["34.254.62.56"])),
            untrusted
        );
        // Through the proxy: the entry it appended (the rightmost), not what the sender put before it.
        let spoofed = xff(&["34.254.62.56, 203.0.113.9"]);
        assert_eq!(g.client_address(proxy, &spoofed), untrusted);
        assert_eq!(
            g.client_address(proxy, &xff(&["34.254.62.56"])),
            "34.254.62.56".parse::<IpAddr>().unwrap()
        );
        // Chained trusted proxies are skipped; several headers read as one list.
        let chained = xff(&["34.254.62.56", "192.168.1.7"]);
        assert_eq!(
            g.client_address(proxy, &chained),
            "34.254.62.56".parse::<IpAddr>().unwrap()
        );
        assert_eq!(g.client_address(proxy, &xff(&["garbage"])), proxy);
        assert_eq!(g.client_address(proxy, &HeaderMap::new()), proxy);
        // Bytes that are not text, rightmost: garbled, so the entry before them is not believed either.
        let mut unreadable = xff(&["34.254.62.56"]);
        unreadable.append(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"\xff10.0.0.1").unwrap(),
        );
        assert_eq!(g.client_address(proxy, &unreadable), proxy);
    }

    #[test]
    fn sources_by_cidr_including_mapped_ipv6() {
        let g = gate();
        assert!(g.source_allowed("34.254.62.56".parse().unwrap()));
        assert!(g.source_allowed("10.20.30.40".parse().unwrap()));
        assert!(!g.source_allowed("34.254.62.57".parse().unwrap()));
        let mapped: IpAddr = "::ffff:34.254.62.56".parse().unwrap();
        let untrusted_peer = g.client_address(mapped, &HeaderMap::new());
        assert!(g.source_allowed(untrusted_peer));
    }
}
