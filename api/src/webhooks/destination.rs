//! Where webhook deliveries may go.
//!
//! The server makes the requests, so a webhook URL must not make it reach
//! what only it can reach: loopback services, the private network, the
//! cloud metadata endpoint (169.254.169.254). [`classify`] sorts every
//! IPv4 and IPv6 address into public, private or special (IANA's
//! special-purpose registries, multicast, reserved space); a [`Policy`]
//! allows public addresses, and private ones only with
//! `--webhook-allow-private`. Special addresses are never allowed.
//!
//! The check runs twice: at registration on the parsed host
//! ([`check_url`]: an IP literal in whatever spelling the WHATWG parser
//! accepted, or a name and every address it resolves to), and at delivery,
//! since a name can resolve elsewhere later (DNS rebinding): the delivery
//! client resolves through [`GuardedResolver`], which drops refused
//! addresses, and IP literals (which reqwest does not resolve) are checked
//! before each send ([`Policy::permits_literal`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use url::{Host, Url};

/// What an address is to a webhook delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Globally reachable unicast.
    Public,
    /// Loopback, private (RFC 1918), shared (CGNAT, RFC 6598) and
    /// unique-local space: on-premises receivers live here; allowed only
    /// with [`Policy::allow_private`]. The name says which block.
    Private(&'static str),
    /// Never a receiver: unspecified, link-local (where cloud metadata
    /// answers), multicast, broadcast, documentation, benchmarking,
    /// reserved, IETF protocol assignments, translation forms of such
    /// addresses, and every other special-purpose block.
    Special(&'static str),
}

use Class::{Private, Special};

/// IPv4 blocks, first match wins: IANA's IPv4 special-purpose address
/// registry (all of it, globally reachable entries such as AS112 too: no
/// webhook receiver lives there), multicast and the reserved 240/4.
#[rustfmt::skip]
const V4: &[(Ipv4Addr, u8, Class)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, Special("\"this network\"")),
    (Ipv4Addr::new(10, 0, 0, 0), 8, Private("private")),
    (Ipv4Addr::new(100, 64, 0, 0), 10, Private("shared address space (CGNAT)")),
    (Ipv4Addr::new(127, 0, 0, 0), 8, Private("loopback")),
    (Ipv4Addr::new(169, 254, 0, 0), 16, Special("link-local")),
    (Ipv4Addr::new(172, 16, 0, 0), 12, Private("private")),
    (Ipv4Addr::new(192, 0, 0, 0), 24, Special("IETF protocol assignments")),
    (Ipv4Addr::new(192, 0, 2, 0), 24, Special("documentation")),
    (Ipv4Addr::new(192, 31, 196, 0), 24, Special("AS112")),
    (Ipv4Addr::new(192, 52, 193, 0), 24, Special("AMT")),
    (Ipv4Addr::new(192, 88, 99, 0), 24, Special("6to4 relay anycast")),
    (Ipv4Addr::new(192, 168, 0, 0), 16, Private("private")),
    (Ipv4Addr::new(192, 175, 48, 0), 24, Special("AS112")),
    (Ipv4Addr::new(198, 18, 0, 0), 15, Special("benchmarking")),
    (Ipv4Addr::new(198, 51, 100, 0), 24, Special("documentation")),
    (Ipv4Addr::new(203, 0, 113, 0), 24, Special("documentation")),
    (Ipv4Addr::new(224, 0, 0, 0), 4, Special("multicast")),
    (Ipv4Addr::new(255, 255, 255, 255), 32, Special("broadcast")),
    (Ipv4Addr::new(240, 0, 0, 0), 4, Special("reserved")),
];

/// IPv6 blocks, first match wins, after the forms that embed an IPv4
/// address (see [`classify`]): IANA's IPv6 special-purpose address
/// registry, the deprecated site-local and IPv4-compatible forms, and
/// multicast. What is left is public inside 2000::/3 (global unicast) and
/// reserved outside it.
#[rustfmt::skip]
const V6: &[(Ipv6Addr, u8, Class)] = &[
    (Ipv6Addr::UNSPECIFIED, 128, Special("unspecified")),
    (Ipv6Addr::LOCALHOST, 128, Private("loopback")),
    (Ipv6Addr::UNSPECIFIED, 96, Special("IPv4-compatible (deprecated)")),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, Special("local-use IPv4/IPv6 translation")),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, Special("discard-only")),
    (Ipv6Addr::new(0x100, 0, 0, 1, 0, 0, 0, 0), 64, Special("dummy prefix")),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23, Special("IETF protocol assignments")),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, Special("documentation")),
    (Ipv6Addr::new(0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0), 48, Special("AS112")),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, Special("documentation")),
    (Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16, Special("SRv6 SIDs")),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, Private("unique-local")),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, Special("link-local")),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, Special("site-local (deprecated)")),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, Special("multicast")),
];

/// NAT64's well-known prefix 64:ff9b::/96 (RFC 6052).
const NAT64: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0);
/// 6to4, 2002::/16 (RFC 3056): the next 32 bits are an IPv4 address.
const SIX_TO_FOUR: Ipv6Addr = Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0);
/// Global unicast, 2000::/3.
const GLOBAL_UNICAST: Ipv6Addr = Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0);

fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

/// What `ip` is. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are the
/// IPv4 address they map; NAT64 (64:ff9b::/96) and 6to4 (2002::/16)
/// addresses are special unless the IPv4 address they embed is public.
pub fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Class {
    V4.iter()
        .find(|(net, len, _)| in_v4(ip, *net, *len))
        .map_or(Class::Public, |(_, _, class)| *class)
}

fn classify_v6(ip: Ipv6Addr) -> Class {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let bits = u128::from(ip);
    let embedded = if in_v6(ip, NAT64, 96) {
        Some((
            Ipv4Addr::from(bits as u32),
            "NAT64 form of a non-public IPv4 address",
        ))
    } else if in_v6(ip, SIX_TO_FOUR, 16) {
        Some((
            Ipv4Addr::from((bits >> 80) as u32),
            "6to4 form of a non-public IPv4 address",
        ))
    } else {
        None
    };
    if let Some((v4, name)) = embedded {
        return match classify_v4(v4) {
            Class::Public => Class::Public,
            _ => Special(name),
        };
    }
    if let Some((_, _, class)) = V6.iter().find(|(net, len, _)| in_v6(ip, *net, *len)) {
        return *class;
    }
    if in_v6(ip, GLOBAL_UNICAST, 3) {
        Class::Public
    } else {
        Special("reserved")
    }
}

/// Why a destination is refused. The messages are for the owner
/// registering a webhook; deliveries show only that the destination was
/// refused.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// An address that is not public (private ones are allowed with
    /// `--webhook-allow-private`).
    #[error("{ip} is not a public address ({block})")]
    Address { ip: IpAddr, block: &'static str },
    /// `localhost` or a name under it (RFC 6761), whatever it resolves to.
    #[error("{0} names the server itself")]
    LocalName(String),
    /// A name that resolved to a refused address, or did not resolve.
    /// Which of the two, and to what, is not said: registration must not
    /// be a way to look up names in the server's DNS.
    #[error("the host name must resolve, and only to public addresses")]
    Name,
    /// A URL without a host.
    #[error("the URL has no host")]
    NoHost,
}

/// Which destinations deliveries may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Also loopback, private, CGNAT and unique-local addresses and
    /// `localhost` names (on-premises deployments; off by default).
    pub allow_private: bool,
}

/// How long registration waits for a name to resolve.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

impl Policy {
    /// Whether deliveries may go to `ip`.
    pub fn permits(self, ip: IpAddr) -> Result<(), Refused> {
        match classify(ip) {
            Class::Public => Ok(()),
            Class::Private(_) if self.allow_private => Ok(()),
            Class::Private(block) | Class::Special(block) => Err(Refused::Address { ip, block }),
        }
    }

    /// Whether a host name may be used at all (before resolving it):
    /// `localhost`, `*.localhost` and their trailing-dot spellings are
    /// refused unless private destinations are allowed.
    pub fn permits_name(self, name: &str) -> Result<(), Refused> {
        let n = name.trim_end_matches('.').to_ascii_lowercase();
        if !self.allow_private && (n == "localhost" || n.ends_with(".localhost")) {
            return Err(Refused::LocalName(name.to_string()));
        }
        Ok(())
    }

    /// The check that needs no DNS: an IP literal host is checked here,
    /// a name only by [`Policy::permits_name`] (its addresses are checked
    /// where it is resolved).
    pub fn permits_host(self, url: &Url) -> Result<(), Refused> {
        match url.host() {
            Some(Host::Domain(name)) => self.permits_name(name),
            _ => self.permits_literal(url),
        }
    }

    /// The delivery-time check of a URL's host when it is an IP literal
    /// (reqwest connects to those without resolving); a name passes here
    /// and is checked, address by address, by [`GuardedResolver`].
    pub fn permits_literal(self, url: &Url) -> Result<(), Refused> {
        match url.host() {
            None => Err(Refused::NoHost),
            Some(Host::Ipv4(ip)) => self.permits(ip.into()),
            Some(Host::Ipv6(ip)) => self.permits(ip.into()),
            Some(Host::Domain(_)) => Ok(()),
        }
    }

    /// The addresses of `addrs` deliveries may use; refused when none is
    /// left.
    pub fn keep_permitted(
        self,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, Refused> {
        let kept: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| self.permits(a.ip()).is_ok())
            .collect();
        if kept.is_empty() {
            Err(Refused::Name)
        } else {
            Ok(kept)
        }
    }
}

/// The registration check of a webhook URL: its host as parsed (so
/// `http://2130706433/`, `http://0x7f.1/` and `http://[::ffff:7f00:1]/`
/// are all 127.0.0.1), and for a name every address it resolves to now.
pub async fn check_url(url: &Url, policy: Policy) -> Result<(), Refused> {
    policy.permits_host(url)?;
    let Some(Host::Domain(name)) = url.host() else {
        return Ok(());
    };
    let port = url.port_or_known_default().unwrap_or(0);
    let resolved = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name, port)))
        .await
        .map_err(|_| Refused::Name)?
        .map_err(|_| Refused::Name)?;
    let addrs: Vec<SocketAddr> = resolved.collect();
    if addrs.is_empty() || addrs.iter().any(|a| policy.permits(a.ip()).is_err()) {
        return Err(Refused::Name);
    }
    Ok(())
}

/// The delivery client's DNS resolver: the system's (`getaddrinfo`, as
/// reqwest's default), keeping only addresses the policy permits, so a
/// name that re-resolves to a private address after registration reaches
/// nothing. Fails with [`Refused::Name`] when nothing is left.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub policy: Policy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let kept = policy.keep_permitted(addrs)?;
            let addrs: reqwest::dns::Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("a test address")
    }

    /// Every block, and its edges: (address, public, allowed with
    /// allow_private).
    #[test]
    fn addresses_are_classified_by_block() {
        let table: &[(&str, bool, bool)] = &[
            // Public.
            ("8.8.8.8", true, true),
            ("1.1.1.1", true, true),
            ("93.184.215.14", true, true),
            ("9.255.255.255", true, true),
            ("11.0.0.0", true, true),
            ("100.63.255.255", true, true),
            ("100.128.0.0", true, true),
            ("126.255.255.255", true, true),
            ("128.0.0.0", true, true),
            ("169.253.255.255", true, true),
            ("172.15.255.255", true, true),
            ("172.32.0.0", true, true),
            ("192.0.1.0", true, true),
            ("192.167.255.255", true, true),
            ("198.17.255.255", true, true),
            ("198.20.0.0", true, true),
            ("223.255.255.255", true, true),
            ("2606:4700:4700::1111", true, true),
            ("2001:4860:4860::8888", true, true),
            ("2001:200::1", true, true),
            ("2003::1", true, true),
            ("::ffff:8.8.8.8", true, true),
            ("64:ff9b::808:808", true, true),
            ("2002:808:808::1", true, true),
            // Private: allowed on premises.
            ("127.0.0.1", false, true),
            ("127.255.255.254", false, true),
            ("10.0.0.1", false, true),
            ("10.255.255.255", false, true),
            ("172.16.0.1", false, true),
            ("172.31.255.255", false, true),
            ("192.168.1.1", false, true),
            ("100.64.0.1", false, true),
            ("100.127.255.255", false, true),
            ("::1", false, true),
            ("fc00::1", false, true),
            ("fd12:3456::1", false, true),
            ("::ffff:127.0.0.1", false, true),
            ("::ffff:10.1.2.3", false, true),
            // Special: never.
            ("0.0.0.0", false, false),
            ("0.1.2.3", false, false),
            ("169.254.169.254", false, false),
            ("169.254.0.1", false, false),
            ("192.0.0.1", false, false),
            ("192.0.0.170", false, false),
            ("192.0.2.1", false, false),
            ("192.31.196.1", false, false),
            ("192.52.193.1", false, false),
            ("192.88.99.1", false, false),
            ("192.175.48.1", false, false),
            ("198.18.0.1", false, false),
            ("198.19.255.255", false, false),
            ("198.51.100.1", false, false),
            ("203.0.113.1", false, false),
            ("224.0.0.1", false, false),
            ("239.255.255.250", false, false),
            ("240.0.0.1", false, false),
            ("255.255.255.254", false, false),
            ("255.255.255.255", false, false),
            ("::", false, false),
            ("::127.0.0.1", false, false),
            ("::8.8.8.8", false, false),
            ("::ffff:169.254.169.254", false, false),
            ("::ffff:0.0.0.0", false, false),
            ("64:ff9b::a9fe:a9fe", false, false),
            ("64:ff9b::7f00:1", false, false),
            ("64:ff9b::a00:1", false, false),
            ("64:ff9b:1::1", false, false),
            ("2002:7f00:1::", false, false),
            ("2002:a9fe:a9fe::1", false, false),
            ("2002:c0a8:101::1", false, false),
            ("100::1", false, false),
            ("100:0:0:1::1", false, false),
            ("2001::1", false, false),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", false, false),
            ("2001:1::1", false, false),
            ("2001:2::1", false, false),
            ("2001:20::1", false, false),
            ("2001:1ff:ffff::1", false, false),
            ("2001:db8::1", false, false),
            ("2620:4f:8000::1", false, false),
            ("3fff::1", false, false),
            ("3fff:fff::1", false, false),
            ("5f00::1", false, false),
            ("fe80::1", false, false),
            ("febf::1", false, false),
            ("fec0::1", false, false),
            ("feff::1", false, false),
            ("ff02::1", false, false),
            ("ff0e::1", false, false),
            ("4000::1", false, false),
            ("1::1", false, false),
            ("e000::1", false, false),
        ];
        let strict = Policy::default();
        let on_premises = Policy {
            allow_private: true,
        };
        for &(addr, public, private_ok) in table {
            let a = ip(addr);
            assert_eq!(
                strict.permits(a).is_ok(),
                public,
                "{addr}: {:?} by default",
                classify(a)
            );
            assert_eq!(
                on_premises.permits(a).is_ok(),
                private_ok,
                "{addr}: {:?} with allow_private",
                classify(a)
            );
        }
    }

    #[test]
    fn refusals_name_the_block() {
        let e = Policy::default()
            .permits(ip("169.254.169.254"))
            .expect_err("metadata");
        assert_eq!(
            e.to_string(),
            "169.254.169.254 is not a public address (link-local)"
        );
        let e = Policy::default().permits(ip("::1")).expect_err("loopback");
        assert_eq!(e.to_string(), "::1 is not a public address (loopback)");
    }

    /// The WHATWG host parser turns every spelling into the address, and
    /// the check runs on what it parsed.
    #[test]
    fn every_spelling_of_a_refused_host_is_refused() {
        let strict = Policy::default();
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0x7f000001/",
            "http://127.1/",
            "http://0177.0.0.1/",
            "http://017700000001/",
            "http://127.0.0.1.:8080/",
            "http://%31%32%37.0.0.1/",
            "http://\u{ff11}\u{ff12}\u{ff17}.0.0.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[0:0:0:0:0:ffff:127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://[::1]/",
            "http://[::]/",
            "http://0.0.0.0/",
            "http://0/",
            "http://169.254.169.254/latest/meta-data/",
            "http://0xa9fea9fe/",
            "http://[fe80::1]/",
            "https://10.0.0.1:8443/x",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://localhost.:9000/",
            "http://%6c%6fcalhost/",
            "http://api.localhost/",
            "http://a.b.localhost./",
        ] {
            let parsed = Url::parse(url).expect("the parser accepts it");
            assert!(
                strict.permits_host(&parsed).is_err(),
                "{url} (host {:?}) must be refused",
                parsed.host()
            );
        }
        for url in [
            "https://hooks.example.com/x",
            "http://8.8.8.8/",
            "http://[2606:4700:4700::1111]/",
            "http://localhost.example.com/",
            "http://notlocalhost/",
        ] {
            let parsed = Url::parse(url).expect("the parser accepts it");
            assert_eq!(strict.permits_host(&parsed), Ok(()), "{url}");
        }
        let on_premises = Policy {
            allow_private: true,
        };
        for url in ["http://127.0.0.1:9/", "http://localhost/", "http://[::1]/"] {
            let parsed = Url::parse(url).expect("the parser accepts it");
            assert_eq!(on_premises.permits_host(&parsed), Ok(()), "{url}");
        }
        for url in ["http://169.254.169.254/", "http://0.0.0.0/", "http://[::]/"] {
            let parsed = Url::parse(url).expect("the parser accepts it");
            assert!(on_premises.permits_host(&parsed).is_err(), "{url}");
        }
        // At delivery, names are left to the resolver; literals are not.
        let literal = |u: &str| strict.permits_literal(&Url::parse(u).expect("a URL"));
        assert_eq!(literal("http://localhost/"), Ok(()));
        assert!(literal("http://0x7f.1/").is_err());
        assert!(literal("http://[::ffff:7f00:1]/").is_err());
    }

    #[test]
    fn the_resolver_filter_drops_refused_addresses_and_fails_when_none_remain() {
        let sa = |s: &str| -> SocketAddr { s.parse().expect("a test socket address") };
        let strict = Policy::default();
        assert_eq!(
            strict.keep_permitted([sa("127.0.0.1:80"), sa("8.8.8.8:80"), sa("[::1]:80")]),
            Ok(vec![sa("8.8.8.8:80")])
        );
        assert_eq!(
            strict.keep_permitted([sa("127.0.0.1:80"), sa("169.254.169.254:80")]),
            Err(Refused::Name)
        );
        assert_eq!(strict.keep_permitted([]), Err(Refused::Name));
        let on_premises = Policy {
            allow_private: true,
        };
        assert_eq!(
            on_premises.keep_permitted([sa("127.0.0.1:80"), sa("169.254.169.254:80")]),
            Ok(vec![sa("127.0.0.1:80")])
        );
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_resolves_to_loopback() {
        use reqwest::dns::Resolve;
        let name = |s: &str| s.parse::<reqwest::dns::Name>().expect("a name");
        let strict = GuardedResolver {
            policy: Policy::default(),
        };
        let err = match strict.resolve(name("localhost")).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e,
        };
        assert_eq!(err.downcast_ref::<Refused>(), Some(&Refused::Name));
        let on_premises = GuardedResolver {
            policy: Policy {
                allow_private: true,
            },
        };
        let addrs: Vec<SocketAddr> = on_premises
            .resolve(name("localhost"))
            .await
            .expect("localhost resolves")
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    #[tokio::test]
    async fn registration_resolves_names_and_refuses_local_ones() {
        let strict = Policy::default();
        let url = |s: &str| Url::parse(s).expect("a URL");
        assert_eq!(
            check_url(&url("http://localhost:1/"), strict).await,
            Err(Refused::LocalName("localhost".into()))
        );
        assert!(check_url(&url("http://[::ffff:7f00:1]/"), strict)
            .await
            .is_err());
        assert_eq!(
            check_url(&url("http://no-such-host.invalid/"), strict).await,
            Err(Refused::Name)
        );
        assert_eq!(check_url(&url("http://8.8.8.8/"), strict).await, Ok(()));
        let on_premises = Policy {
            allow_private: true,
        };
        assert_eq!(
            check_url(&url("http://localhost:1/"), on_premises).await,
            Ok(())
        );
    }
}
