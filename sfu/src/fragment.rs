//! `application/trickle-ice-sdpfrag` (RFC 8840) bodies of WHIP/WHEP PATCH:
//! the remote's ICE credentials (a restart) and trickled candidates, read
//! into what [`crate::Sfu::ice_restart`] and [`crate::Sfu::add_candidates`]
//! take.

use str0m::net::Protocol;
use str0m::Candidate;

/// Candidates accepted in one PATCH; a real client trickles a handful.
pub const MAX_CANDIDATES_PER_FRAGMENT: usize = 20;

#[derive(Debug, Default)]
pub struct Fragment {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
    pub candidates: Vec<Candidate>,
    /// Candidate lines seen (including ones skipped as unusable).
    pub lines: usize,
}

/// Parses the lines we act on; other attributes (`a=mid`, `m=` lines,
/// `a=end-of-candidates`) are allowed and ignored.
pub fn parse(body: &str) -> Result<Fragment, String> {
    let mut f = Fragment::default();
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(v) = line.strip_prefix("a=ice-ufrag:") {
            f.ufrag = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("a=ice-pwd:") {
            f.pwd = Some(v.trim().to_string());
        } else if let Some(c) = line.strip_prefix("a=") {
            if c.starts_with("candidate:") {
                let cand = Candidate::from_sdp_string(c)
                    .map_err(|e| format!("bad candidate line: {e}"))?;
                f.lines += 1;
                if f.lines > MAX_CANDIDATES_PER_FRAGMENT {
                    return Err(format!(
                        "more than {MAX_CANDIDATES_PER_FRAGMENT} candidates in one fragment"
                    ));
                }
                // Media sockets are UDP: TCP candidates could never pair.
                if cand.proto() == Protocol::Udp {
                    f.candidates.push(cand);
                }
            }
        } else if !(line.starts_with("m=") || line.starts_with("c=") || line.starts_with("v=")) {
            return Err(format!(
                "unexpected line in fragment: {}",
                line.chars().take(40).collect::<String>()
            ));
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trickle_fragment_yields_candidates() {
        let f = parse("a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1 1 udp 2113929471 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n")
            .expect("parses");
        assert_eq!(f.ufrag.as_deref(), Some("abcd"));
        assert_eq!(f.candidates.len(), 1);
    }

    #[test]
    fn candidates_are_capped_and_tcp_ones_skipped() {
        let line = "a=candidate:1 1 udp 2113929471 127.0.0.1 5000 typ host\r\n";
        assert!(parse(&line.repeat(MAX_CANDIDATES_PER_FRAGMENT)).is_ok());
        assert!(parse(&line.repeat(MAX_CANDIDATES_PER_FRAGMENT + 1)).is_err());
        let tcp = parse("a=candidate:2 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active\r\n")
            .expect("parses");
        assert!(tcp.candidates.is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let err = parse("a=candidate:garbage").expect_err("garbage");
        assert!(!err.contains("0x"), "no memory address in {err:?}");
        assert!(parse("hello world").is_err());
        assert!(parse("").expect("empty is fine").candidates.is_empty());
    }
}
