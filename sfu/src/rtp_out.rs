//! Packetize once, send to many.
//!
//! A publisher's H.264 and Opus frames are cut into RTP payloads once, at
//! ingest, with str0m's own packetizers. Every viewer then writes those same
//! payloads (`Arc<[u8]>`, shared) on its stream with its own sequence numbers
//! and timestamps through str0m's RTP-level `write_rtp`. Compared with handing
//! each viewer the frame (str0m packetizes per viewer), this removes a
//! packetizer run and two payload copies per viewer and packet, and the
//! viewers' retransmission caches hold references to one copy of each payload
//! instead of one copy per viewer.
//!
//! Codecs str0m does not expose a packetizer for (VP9, AV1) and VP8 (whose
//! picture ids would have to be rewritten per viewer across layer switches)
//! keep the frame path.

use std::sync::Arc;
use std::time::Instant;

use str0m::format::Codec;
use str0m::media::{MediaTime, Mid, Pt};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::unversioned::{H264Packetizer, OpusPacketizer, Packetizer};
use str0m::Rtc;

/// Bytes of RTP payload per packet: what str0m's own packetization uses for
/// its default MTU (the datagram target less the 16-byte SRTP tag, aligned
/// down to the 16-byte cipher block), so packets are the size they were when
/// str0m packetized per viewer.
pub(crate) const PAYLOAD_MTU: usize = {
    let rtp = str0m::DATAGRAM_MTU_TARGET - 16;
    rtp - rtp % 16
};

/// One publisher's packetizers: one per video layer (the H.264 packetizer
/// carries parameter sets over to the next IDR) and one for audio.
#[derive(Default)]
pub(crate) struct Packetizers {
    h264: Vec<H264Packetizer>,
    opus: OpusPacketizer,
}

impl Packetizers {
    /// The frame's RTP payloads, or `None` when viewers should packetize it
    /// themselves (another codec, or a frame the packetizer refused, which
    /// the per-viewer path then reports).
    pub fn packetize(&mut self, codec: Codec, layer: u8, data: &[u8]) -> Option<Vec<Arc<[u8]>>> {
        let chunks = match codec {
            Codec::H264 => {
                let layer = usize::from(layer);
                while self.h264.len() <= layer {
                    self.h264.push(H264Packetizer::default());
                }
                self.h264.get_mut(layer)?.packetize(PAYLOAD_MTU, data)
            }
            Codec::Opus => self.opus.packetize(PAYLOAD_MTU, data),
            _ => return None,
        };
        match chunks {
            Ok(chunks) => Some(chunks.into_iter().map(Arc::from).collect()),
            Err(e) => {
                tracing::debug!(?codec, "packetizing failed, viewers packetize: {e}");
                None
            }
        }
    }
}

/// A viewer track's own RTP numbering for shared payloads. Starts where
/// str0m's `SeqNo::default()` does: at random below 2^15 (RFC 3550 §5.1).
#[derive(Default)]
pub(crate) struct RtpNumbering {
    seq: SeqNo,
}

impl RtpNumbering {
    /// Writes a frame's shared payloads (all of them, or a run of them) on
    /// the viewer's stream for `mid`: consecutive sequence numbers, the
    /// frame's (rebased) RTP time on each, the marker on the last packet of
    /// a video frame (when `ends_frame`), video retransmittable. False when
    /// the viewer has no sending stream for `mid`.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &mut self,
        rtc: &mut Rtc,
        mid: Mid,
        pt: Pt,
        time: MediaTime,
        wallclock: Instant,
        video: bool,
        packets: &[Arc<[u8]>],
        ends_frame: bool,
    ) -> bool {
        let mut api = rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return false;
        };
        // Only the low 32 bits go on the wire; the timeline is 64-bit.
        let time = time.numer() as u32;
        let last = packets.len().saturating_sub(1);
        for (i, payload) in packets.iter().enumerate() {
            tx.write_rtp(
                RtpWrite::new(pt, self.seq.inc(), time, wallclock, payload.clone())
                    .marker(video && ends_frame && i == last)
                    .nackable(video),
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h264_frames_are_cut_to_the_payload_mtu_and_other_codecs_are_left_alone() {
        let mut p = Packetizers::default();
        // One IDR slice NAL of 4000 bytes, Annex B.
        let mut au = vec![0, 0, 0, 1, 0x65];
        au.extend(std::iter::repeat_n(0xAB, 4000));
        let packets = p.packetize(Codec::H264, 2, &au).expect("H.264 is shared");
        assert!(packets.len() >= 4, "{} packets", packets.len());
        assert!(packets.iter().all(|pk| pk.len() <= PAYLOAD_MTU));
        // FU-A: indicator type 28, start bit on the first fragment only,
        // end bit on the last.
        assert!(packets.iter().all(|pk| pk[0] & 0x1f == 28));
        assert_eq!(packets[0][1] & 0xC0, 0x80);
        assert_eq!(packets[packets.len() - 1][1] & 0xC0, 0x40);
        let carried: usize = packets.iter().map(|pk| pk.len() - 2).sum();
        assert_eq!(carried, 4000, "every byte after the NAL header, once");

        let opus = p
            .packetize(Codec::Opus, 0, &[1, 2, 3])
            .expect("Opus is shared");
        assert_eq!(opus.len(), 1);
        assert_eq!(&opus[0][..], &[1, 2, 3]);

        assert!(p.packetize(Codec::Vp8, 0, &[0x10, 0, 0]).is_none());
        assert!(p.packetize(Codec::Vp9, 0, &[0x10, 0, 0]).is_none());
    }
}
