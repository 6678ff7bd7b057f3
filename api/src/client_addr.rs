//! The client address every route sees (WHEP address rules, failed
//! credential throttling, analytics, LL-HLS logs): decided once per
//! request by the HTTP listener and handed to handlers as
//! `ConnectInfo<SocketAddr>`.
//!
//! It is the TCP peer, unless that peer is a trusted proxy
//! (`--trusted-proxies`): then `X-Forwarded-For` is read from the right,
//! skipping the addresses of trusted proxies, and the first address that
//! is not one is the client. A client can put anything in the header
//! before its first proxy; the entries our proxies appended are on the
//! right, so the left part is never believed. Without trusted proxies,
//! or from a peer that is not one, the header is ignored. An entry that is
//! not an address (`unknown`, an obfuscated name) ends the walk at the
//! last proxy, whose address is then used: a proxy we cannot see past is
//! still one address. An address from the header has port 0.
//!
//! The per-address connection cap (`http_listener`) counts TCP peers: it
//! works before any request is read.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// `X-Forwarded-For` entries looked at, at most (right to left).
const MAX_HOPS: usize = 32;

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    /// No proxy is trusted: the TCP peer is the client.
    pub fn none() -> TrustedProxies {
        TrustedProxies::default()
    }

    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> TrustedProxies {
        TrustedProxies(nets.into_iter().map(|n| n.trunc()).collect())
    }

    /// Parses `10.0.0.0/8,192.0.2.7,2001:db8::/32` (an address alone is
    /// one host); an empty string trusts none.
    pub fn parse(s: &str) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = match part.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => part
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| format!("{part:?} is not an address or CIDR block"))?,
            };
            nets.push(net);
        }
        Ok(TrustedProxies::new(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client behind `peer` given the request's `headers`.
    pub fn client_addr(&self, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        if self.0.is_empty() || !self.trusts(peer.ip()) {
            return peer;
        }
        let mut client = peer;
        let entries = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|v| {
                // A value that is not visible ASCII is one bad entry.
                let text = v.to_str().unwrap_or("\u{0}");
                text.rsplit(',')
            })
            .take(MAX_HOPS);
        for entry in entries {
            let Some(ip) = parse_entry(entry.trim()) else {
                return client;
            };
            client = SocketAddr::new(ip.to_canonical(), 0);
            if !self.trusts(ip) {
                return client;
            }
        }
        client
    }
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:4711`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = entry.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .and_then(|e| e.parse::<std::net::Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).expect("valid"));
        }
        h
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("valid")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("valid")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let peer = addr("203.0.113.5:5000");
        for trusted in [
            TrustedProxies::none(),
            TrustedProxies::parse("10.0.0.0/8").expect("valid"),
        ] {
            assert_eq!(trusted.client_addr(peer, &headers(&["198.51.100.1"])), peer);
        }
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client() {
        let t = TrustedProxies::parse("10.0.0.0/8, 2001:db8:ff::/48").expect("valid");
        let proxy = addr("10.1.2.3:40000");
        // A forged entry on the left is not believed.
        let c = t.client_addr(proxy, &headers(&["1.1.1.1, 198.51.100.7, 10.9.9.9"]));
        assert_eq!(c.ip(), ip("198.51.100.7"));
        assert_eq!(c.port(), 0);
        // Several headers are one list, in order.
        let c = t.client_addr(
            proxy,
            &headers(&["6.6.6.6", "198.51.100.8:1234", "10.0.0.1"]),
        );
        assert_eq!(c.ip(), ip("198.51.100.8"));
        let c = t.client_addr(proxy, &headers(&["[2001:db8::5]:443, [2001:db8:ff::1]"]));
        assert_eq!(c.ip(), ip("2001:db8::5"));
        // No header: the proxy itself.
        assert_eq!(t.client_addr(proxy, &HeaderMap::new()), proxy);
        // Only trusted entries: the leftmost of them.
        let c = t.client_addr(proxy, &headers(&["10.0.0.2, 10.0.0.1"]));
        assert_eq!(c.ip(), ip("10.0.0.2"));
        // An IPv4-mapped peer is its IPv4 address.
        let mapped = addr("[::ffff:10.1.2.3]:40000");
        let c = t.client_addr(mapped, &headers(&["198.51.100.9"]));
        assert_eq!(c.ip(), ip("198.51.100.9"));
    }

    #[test]
    fn an_entry_that_is_not_an_address_stops_at_the_last_proxy() {
        let t = TrustedProxies::parse("10.0.0.0/8").expect("valid");
        let proxy = addr("10.1.2.3:40000");
        let c = t.client_addr(proxy, &headers(&["198.51.100.1, unknown, 10.0.0.5"]));
        assert_eq!(c.ip(), ip("10.0.0.5"));
        let c = t.client_addr(proxy, &headers(&["198.51.100.1, "]));
        assert_eq!(c, proxy);
    }

    #[test]
    fn trusted_proxies_parse_addresses_and_blocks() {
        let t = TrustedProxies::parse("192.0.2.7,2001:db8::/32, ,10.0.0.0/8").expect("valid");
        assert!(t.trusts(ip("192.0.2.7")));
        assert!(!t.trusts(ip("192.0.2.8")));
        assert!(t.trusts(ip("2001:db8:1::1")));
        assert!(t.trusts(ip("10.200.0.1")));
        assert!(TrustedProxies::parse("").expect("valid").is_empty());
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.example").is_err());
    }
}
