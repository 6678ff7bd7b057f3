//! An SDP offer, read once: str0m's parse (which the answer is built from)
//! and what the forwarder decides by — the audio/video sections and their
//! directions, simulcast, the H.264 profiles offered, the ICE credentials.
//! Everything downstream asks this value instead of scanning the text.

use str0m::change::SdpOffer;

use crate::h264::{self, ProfileLevelId};
use crate::SfuError;

/// An offer for a WHIP or WHEP session.
#[derive(Debug)]
pub struct Offer {
    text: String,
    parsed: SdpOffer,
    media: Vec<Section>,
    simulcast: bool,
    h264_profiles: Vec<ProfileLevelId>,
    ice_ufrag: Option<String>,
}

/// One audio or video m-section: whether its direction lets media flow
/// towards us (the offerer sends) and from us (the offerer receives).
#[derive(Debug, Clone, Copy)]
struct Section {
    sends: bool,
    receives: bool,
}

impl Offer {
    /// Parses an offer; [`SfuError::BadOffer`] when it is not valid SDP.
    pub fn parse(sdp: &str) -> Result<Offer, SfuError> {
        let parsed = SdpOffer::from_sdp_string(sdp).map_err(|e| SfuError::BadOffer {
            reason: parse_error_text(&e.to_string()),
        })?;
        let mut media = Vec::new();
        let mut simulcast = false;
        let mut ice_ufrag = None;
        // The audio/video section being read (`None` in the session part
        // and in other sections, e.g. the data channel's).
        let mut current: Option<Section> = None;
        let mut in_video = false;
        for line in sdp.lines().map(str::trim) {
            if let Some(m) = line.strip_prefix("m=") {
                media.extend(current.take());
                in_video = m.starts_with("video ");
                if in_video || m.starts_with("audio ") {
                    // sendrecv is the default direction.
                    current = Some(Section {
                        sends: true,
                        receives: true,
                    });
                }
                continue;
            }
            if let Some(u) = line.strip_prefix("a=ice-ufrag:") {
                ice_ufrag.get_or_insert_with(|| u.to_string());
            }
            let Some(section) = current.as_mut() else {
                continue;
            };
            match line {
                "a=sendonly" => {
                    *section = Section {
                        sends: true,
                        receives: false,
                    }
                }
                "a=recvonly" => {
                    *section = Section {
                        sends: false,
                        receives: true,
                    }
                }
                "a=inactive" => {
                    *section = Section {
                        sends: false,
                        receives: false,
                    }
                }
                "a=sendrecv" => {
                    *section = Section {
                        sends: true,
                        receives: true,
                    }
                }
                _ => simulcast |= in_video && line.starts_with("a=simulcast:"),
            }
        }
        media.extend(current);
        Ok(Offer {
            text: sdp.to_string(),
            parsed,
            media,
            simulcast,
            h264_profiles: h264::offered_profiles(sdp),
            ice_ufrag,
        })
    }

    /// The offer as received.
    pub fn sdp(&self) -> &str {
        &self.text
    }

    /// Whether audio or video can flow from the offerer (a publisher).
    pub fn can_publish(&self) -> bool {
        self.media.iter().any(|s| s.sends)
    }

    /// Whether audio or video can flow to the offerer (a viewer).
    pub fn can_view(&self) -> bool {
        self.media.iter().any(|s| s.receives)
    }

    /// Whether the offerer sends its video as simulcast (`a=simulcast:`).
    pub fn is_simulcast(&self) -> bool {
        self.simulcast
    }

    /// The packetization-mode=1 H.264 profiles offered, in offer order.
    pub fn h264_profiles(&self) -> &[ProfileLevelId] {
        &self.h264_profiles
    }

    /// The offer's (first) ICE username fragment.
    pub fn ice_ufrag(&self) -> Option<&str> {
        self.ice_ufrag.as_deref()
    }

    /// The offer `sdp` with the remote's new ICE credentials and without
    /// its candidates: what an ICE restart re-applies (see `peer::Conn`).
    pub(crate) fn restart(sdp: &str, ufrag: &str, pwd: &str) -> Result<Offer, SfuError> {
        let mut text = String::with_capacity(sdp.len());
        for line in sdp.lines().map(str::trim_end) {
            if line.starts_with("a=ice-ufrag:") {
                text.push_str("a=ice-ufrag:");
                text.push_str(ufrag);
            } else if line.starts_with("a=ice-pwd:") {
                text.push_str("a=ice-pwd:");
                text.push_str(pwd);
            } else if line.starts_with("a=candidate:") || line.starts_with("a=end-of-candidates") {
                continue;
            } else {
                text.push_str(line);
            }
            text.push_str("\r\n");
        }
        Offer::parse(&text)
    }

    /// str0m's parse, for building the answer, and the text.
    pub(crate) fn into_parts(self) -> (SdpOffer, String) {
        (self.parsed, self.text)
    }
}

/// str0m's parse error names where in memory the parser stopped
/// ("Parse error at PointerOffset(0x7f…)"): no use to a client, and a leak
/// of the server's address layout. That line is left out; the rest ("SDP
/// parse: Unexpected `m`; Expected `o`") says what was wrong.
fn parse_error_text(error: &str) -> String {
    error
        .lines()
        .filter(|l| !l.contains("PointerOffset"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(body: &str) -> Offer {
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
             a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n\
             a=fingerprint:sha-256 {fp}\r\na=setup:actpass\r\n{body}",
            fp = ["AA"; 32].join(":")
        );
        Offer::parse(&sdp).expect("offer parses")
    }

    const AUDIO: &str = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n";
    const VIDEO: &str = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=rtcp-mux\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n";

    #[test]
    fn directions_decide_who_may_use_an_offer() {
        let send = offer(&format!("{AUDIO}a=sendonly\r\n{VIDEO}a=sendonly\r\n"));
        assert!(send.can_publish());
        assert!(!send.can_view());
        let recv = offer(&format!("{AUDIO}a=recvonly\r\n{VIDEO}a=recvonly\r\n"));
        assert!(recv.can_view());
        assert!(!recv.can_publish());
        let both = offer(&format!("{VIDEO}a=sendrecv\r\n"));
        assert!(both.can_view() && both.can_publish());
        let off = offer(&format!("{VIDEO}a=inactive\r\n"));
        assert!(!off.can_view() && !off.can_publish());
        assert_eq!(both.h264_profiles().len(), 1);
        assert_eq!(both.ice_ufrag(), Some("abcd"));
        assert!(!both.is_simulcast());
    }

    #[test]
    fn simulcast_is_read_from_the_video_section() {
        let o = offer(&format!(
            "{VIDEO}a=sendonly\r\na=rid:f send\r\na=rid:h send\r\na=simulcast:send f;h\r\n"
        ));
        assert!(o.is_simulcast());
    }

    #[test]
    fn garbage_is_a_bad_offer_and_a_restart_keeps_the_media() {
        let Err(SfuError::BadOffer { reason }) = Offer::parse("v=0\r\nm=banana\r\n") else {
            panic!("garbage parsed");
        };
        assert!(!reason.contains("0x"), "no memory address in {reason:?}");
        assert!(
            reason.contains("Expected"),
            "says what was wrong: {reason:?}"
        );
        let o = offer(&format!(
            "{VIDEO}a=sendonly\r\na=candidate:1 1 udp 2113929471 10.0.0.2 5000 typ host\r\n"
        ));
        let r = Offer::restart(o.sdp(), "wxyz", "9876543210987654321098").expect("re-offer");
        assert_eq!(r.ice_ufrag(), Some("wxyz"));
        assert!(!r.sdp().contains("a=candidate"));
        assert!(r.can_publish() && !r.can_view());
    }
}
