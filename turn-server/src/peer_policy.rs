//! Which peer addresses a client may relay to. Without this a TURN server
//! is an open proxy into the network it runs in, so loopback, private,
//! link-local, multicast and other special ranges are refused unless the
//! operator opts in (tests relay to loopback peers).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    /// Allow 127.0.0.0/8 and ::1 (for tests on one machine).
    pub allow_loopback: bool,
    /// Allow RFC 1918, RFC 6598 shared space and IPv6 ULA ranges.
    pub allow_private: bool,
}

impl PeerPolicy {
    pub fn allows(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.allows_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.allows_v4(v4),
                None => self.allows_v6(v6),
            },
        }
    }

    fn allows_v4(&self, ip: Ipv4Addr) -> bool {
        let o = ip.octets();
        if ip.is_loopback() {
            return self.allow_loopback;
        }
        let private = ip.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64);
        if private {
            return self.allow_private;
        }
        !(ip.is_unspecified()
            || ip.is_link_local()
            || ip.is_multicast()
            || ip.is_broadcast()
            || o[0] == 0
            || o[0] >= 240)
    }

    fn allows_v6(&self, ip: Ipv6Addr) -> bool {
        let s = ip.segments();
        if ip.is_loopback() {
            return self.allow_loopback;
        }
        if (s[0] & 0xfe00) == 0xfc00 {
            return self.allow_private;
        }
        !(ip.is_unspecified() || ip.is_multicast() || (s[0] & 0xffc0) == 0xfe80)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("literal")
    }

    #[test]
    fn special_ranges_are_denied_by_default() {
        let p = PeerPolicy::default();
        for denied in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!p.allows(ip(denied)), "{denied}");
        }
        assert!(p.allows(ip("8.8.8.8")));
        assert!(p.allows(ip("2001:db8::1")));
    }

    #[test]
    fn loopback_flag_allows_only_loopback() {
        let p = PeerPolicy {
            allow_loopback: true,
            allow_private: false,
        };
        assert!(p.allows(ip("127.0.0.1")));
        assert!(p.allows(ip("::1")));
        assert!(!p.allows(ip("10.0.0.1")));
    }
}
