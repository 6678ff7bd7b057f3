//! Who may watch: stream visibility, and address rules (countries, CIDR
//! ranges) that a stream or a play token can carry.
//!
//! **Country rules without a GeoIP database fail closed**: a rule that
//! names countries cannot be checked without `--geoip-db`, so it refuses
//! every viewer (403) rather than letting everyone in; the server logs a
//! warning at start when that can happen. An address the database does
//! not place in any country (private ranges, loopback) fails a country
//! rule too. CIDR rules need no database.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

/// Who may play a stream (see [`crate::Store::authorize_play`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Anyone with the URL.
    Public,
    /// Any signed-in user.
    Authenticated,
    /// Users holding a play token, which the API issues after checking
    /// their entitlement (subscription or pay-per-view).
    Entitled,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Authenticated => "authenticated",
            Visibility::Entitled => "entitled",
        }
    }
}

impl std::str::FromStr for Visibility {
    type Err = ();
    fn from_str(s: &str) -> Result<Visibility, ()> {
        match s {
            "public" => Ok(Visibility::Public),
            "authenticated" => Ok(Visibility::Authenticated),
            "entitled" => Ok(Visibility::Entitled),
            _ => Err(()),
        }
    }
}

/// Why an address rule list is malformed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("country codes are two letters (ISO 3166-1 alpha-2)")]
    BadCountry,
    #[error("invalid CIDR range (e.g. 203.0.113.0/24 or 2001:db8::/32)")]
    BadCidr,
    #[error("at most 256 countries and 256 CIDR ranges")]
    TooMany,
}

/// Normalises country codes (upper case) and checks them.
pub fn normalize_countries(list: &[String]) -> Result<Vec<String>, RuleError> {
    if list.len() > 256 {
        return Err(RuleError::TooMany);
    }
    list.iter()
        .map(|c| {
            let c = c.trim();
            if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()) {
                Ok(c.to_ascii_uppercase())
            } else {
                Err(RuleError::BadCountry)
            }
        })
        .collect()
}

/// Normalises CIDR ranges (canonical network form) and checks them.
pub fn normalize_cidrs(list: &[String]) -> Result<Vec<String>, RuleError> {
    if list.len() > 256 {
        return Err(RuleError::TooMany);
    }
    list.iter()
        .map(|c| {
            c.trim()
                .parse::<IpNet>()
                .map(|n| n.trunc().to_string())
                .map_err(|_| RuleError::BadCidr)
        })
        .collect()
}

/// Whether every range of `inner` lies inside some range of `outer`
/// (a play token may narrow a stream's ranges, never widen them).
pub fn cidrs_within(inner: &[String], outer: &[String]) -> bool {
    let outer: Vec<IpNet> = outer.iter().filter_map(|c| c.parse().ok()).collect();
    inner.iter().all(|c| {
        c.parse::<IpNet>()
            .is_ok_and(|n| outer.iter().any(|o| o.contains(&n)))
    })
}

/// Parsed address rules: each non-empty list must match.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    countries: Vec<String>,
    cidrs: Vec<IpNet>,
}

impl Rules {
    pub fn parse(countries: &[String], cidrs: &[String]) -> Result<Rules, RuleError> {
        Ok(Rules {
            countries: normalize_countries(countries)?,
            cidrs: cidrs
                .iter()
                .map(|c| c.parse::<IpNet>().map_err(|_| RuleError::BadCidr))
                .collect::<Result<_, _>>()?,
        })
    }

    /// `Err(reason)` when the viewer at `ip` is outside the rules.
    pub fn check(&self, ip: Option<IpAddr>, geoip: Option<&GeoIp>) -> Result<(), &'static str> {
        if self.cidrs.is_empty() && self.countries.is_empty() {
            return Ok(());
        }
        let Some(ip) = ip.map(canonical) else {
            return Err("viewer address unknown");
        };
        if !self.cidrs.is_empty() && !self.cidrs.iter().any(|n| n.contains(&ip)) {
            return Err("not available from this network");
        }
        if !self.countries.is_empty() {
            let Some(geoip) = geoip else {
                return Err("country rules need a GeoIP database, none is configured");
            };
            match geoip.country(ip) {
                Some(c) if self.countries.iter().any(|x| x.eq_ignore_ascii_case(&c)) => {}
                _ => return Err("not available in this country"),
            }
        }
        Ok(())
    }
}

/// IPv4-mapped IPv6 addresses (a dual-stack listener's view of IPv4
/// clients) compared as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// A MaxMind-format country database (GeoLite2-Country, GeoIP2-Country or
/// City), read once into memory.
pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("database_type", &self.reader.metadata().database_type)
            .finish()
    }
}

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum GeoIpError {
    #[error("GeoIP database: {0}")]
    Open(#[from] maxminddb::MaxMindDbError),
}

impl GeoIp {
    pub fn open(path: &Path) -> Result<GeoIp, GeoIpError> {
        Ok(GeoIp {
            reader: maxminddb::Reader::open_readfile(path)?,
        })
    }

    /// The ISO 3166-1 alpha-2 country of `ip`, if the database knows it.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let found = self.reader.lookup(ip).ok()?;
        let record: maxminddb::geoip2::Country = found.decode().ok()??;
        record
            .country
            .iso_code
            .or(record.registered_country.iso_code)
            .map(str::to_ascii_uppercase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn cidr_rules_admit_only_their_ranges() {
        let r = Rules::parse(&[], &s(&["203.0.113.0/24", "2001:db8::/32"])).expect("valid");
        assert!(r
            .check(Some("203.0.113.9".parse().expect("ip")), None)
            .is_ok());
        assert!(r
            .check(Some("::ffff:203.0.113.9".parse().expect("ip")), None)
            .is_ok());
        assert!(r
            .check(Some("2001:db8::1".parse().expect("ip")), None)
            .is_ok());
        assert!(r
            .check(Some("198.51.100.1".parse().expect("ip")), None)
            .is_err());
        assert!(r.check(None, None).is_err());
        assert!(Rules::default().check(None, None).is_ok());
    }

    #[test]
    fn country_rules_fail_closed_without_a_database() {
        let r = Rules::parse(&s(&["fr"]), &[]).expect("valid");
        assert_eq!(
            r.check(Some("203.0.113.9".parse().expect("ip")), None),
            Err("country rules need a GeoIP database, none is configured")
        );
    }

    #[test]
    fn rule_lists_are_validated_and_normalised() {
        assert_eq!(
            normalize_countries(&s(&["fr", " De"])),
            Ok(s(&["FR", "DE"]))
        );
        assert_eq!(
            normalize_countries(&s(&["FRA"])),
            Err(RuleError::BadCountry)
        );
        assert_eq!(normalize_cidrs(&s(&["10.1.2.3/8"])), Ok(s(&["10.0.0.0/8"])));
        assert_eq!(
            normalize_cidrs(&s(&["10.0.0.0/33"])),
            Err(RuleError::BadCidr)
        );
        assert!(cidrs_within(&s(&["10.1.0.0/16"]), &s(&["10.0.0.0/8"])));
        assert!(!cidrs_within(&s(&["11.0.0.0/16"]), &s(&["10.0.0.0/8"])));
    }
}
