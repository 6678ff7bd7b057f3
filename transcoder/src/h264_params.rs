//! What an H.264 keyframe tells about its stream: SPS and PPS for the
//! `avcC`, picture size, and the RFC 6381 `CODECS` string — read from the
//! bitstream, never from SDP (OBS signals `42e01f` whatever it encodes).

use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{decode_nal, BitReader};

use crate::fmp4::TrackCodec;

/// Parameter sets found in an access unit, and what they say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H264Params {
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub chroma: (u8, u8, u8),
}

impl H264Params {
    /// Reads the first SPS and PPS of an Annex B access unit; `None` if
    /// either is missing or the SPS does not parse.
    pub fn from_access_unit(annex_b: &[u8]) -> Option<H264Params> {
        let mut sps = None;
        let mut pps = None;
        for nal in sfu::h264::nal_units(annex_b) {
            match nal.first().map(|h| h & 0x1f) {
                Some(7) if sps.is_none() => sps = Some(nal),
                Some(8) if pps.is_none() => pps = Some(nal),
                _ => {}
            }
        }
        let (sps, pps) = (sps?, pps?);
        let rbsp = decode_nal(sps).ok()?;
        let parsed = SeqParameterSet::from_bits(BitReader::new(&*rbsp)).ok()?;
        let (width, height) = parsed.pixel_dimensions().ok()?;
        let ci = &parsed.chroma_info;
        Some(H264Params {
            sps: sps.to_vec(),
            pps: pps.to_vec(),
            width,
            height,
            chroma: (
                u8::try_from(ci.chroma_format.to_u32()).unwrap_or(1),
                ci.bit_depth_luma_minus8,
                ci.bit_depth_chroma_minus8,
            ),
        })
    }

    /// RFC 6381 codec string, `avc1.PPCCLL` from the SPS bytes.
    pub fn codecs(&self) -> String {
        let b = |i: usize| self.sps.get(i).copied().unwrap_or(0);
        format!("avc1.{:02x}{:02x}{:02x}", b(1), b(2), b(3))
    }

    pub fn track_codec(&self) -> TrackCodec {
        TrackCodec::H264 {
            sps: self.sps.clone(),
            pps: self.pps.clone(),
            width: u16::try_from(self.width).unwrap_or(u16::MAX),
            height: u16::try_from(self.height).unwrap_or(u16::MAX),
            chroma: self.chroma,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPS and PPS of a 320x240 constrained-baseline stream (openh264).
    const AU: &[u8] = &[
        0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x0d, 0x8c, 0x8d, 0x40, 0xa0, 0xf9, 0x00, 0xf0, 0x88, 0x46,
        0xa0, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80, 0, 0, 0, 1, 0x65, 0xb8, 0x00, 0x04,
    ];

    #[test]
    fn reads_size_and_codec_string_from_the_sps() {
        let p = H264Params::from_access_unit(AU).expect("params");
        assert_eq!((p.width, p.height), (320, 240));
        assert_eq!(p.codecs(), "avc1.42c00d");
        assert_eq!(p.pps, vec![0x68, 0xce, 0x3c, 0x80]);
    }

    #[test]
    fn garbage_gives_none() {
        assert!(H264Params::from_access_unit(&[0, 0, 1, 0x67, 0xff]).is_none());
        assert!(H264Params::from_access_unit(&[1, 2, 3]).is_none());
        assert!(H264Params::from_access_unit(&AU[..18]).is_none());
    }
}
