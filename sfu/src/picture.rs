//! Picture size of a keyframe, read from the bitstream: the H.264 SPS
//! (parsed with `h264-reader`) or the VP8 keyframe header (RFC 6386 §9.1).
//! Used to report each simulcast layer's resolution.

use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{decode_nal, BitReader};
use str0m::format::Codec;

/// Width and height of the picture a keyframe starts, when the codec's
/// header is understood here.
pub fn keyframe_size(codec: Codec, data: &[u8]) -> Option<(u32, u32)> {
    match codec {
        Codec::H264 => h264_size(data),
        Codec::Vp8 => vp8_size(data),
        _ => None,
    }
}

fn h264_size(annex_b: &[u8]) -> Option<(u32, u32)> {
    let sps = crate::h264::nal_units(annex_b).find(|n| n.first().is_some_and(|h| h & 0x1f == 7))?;
    let rbsp = decode_nal(sps).ok()?;
    let sps = SeqParameterSet::from_bits(BitReader::new(&*rbsp)).ok()?;
    sps.pixel_dimensions().ok()
}

/// VP8 keyframe: 3-byte frame tag (bit 0 clear), start code 9d 01 2a, then
/// 14-bit width and height (little endian, top two bits are scaling).
fn vp8_size(frame: &[u8]) -> Option<(u32, u32)> {
    let b = frame.get(..10)?;
    if b[0] & 1 != 0 || b[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u32::from(u16::from_le_bytes([b[6], b[7]]) & 0x3fff);
    let h = u32::from(u16::from_le_bytes([b[8], b[9]]) & 0x3fff);
    Some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vp8_keyframe_size() {
        let frame = [
            0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01, 0, 0,
        ];
        assert_eq!(keyframe_size(Codec::Vp8, &frame), Some((640, 360)));
        assert_eq!(keyframe_size(Codec::Vp8, &frame[..5]), None);
    }

    #[test]
    fn reads_h264_sps_size() {
        // SPS of a 320x240 Baseline stream (openh264), after a start code.
        let au = [
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x0d, 0x8c, 0x8d, 0x40, 0xa0, 0xfd, 0x00, 0xf0, 0x88,
            0x46, 0xa0, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80,
        ];
        assert_eq!(keyframe_size(Codec::H264, &au), Some((320, 240)));
    }
}
