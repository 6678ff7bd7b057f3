//! FLV tag bodies as RTMP carries them (video and audio messages): the
//! few header bytes that say codec, frame type and packet type. Pure and
//! total: any byte string gives a value or an error, never a panic.
//!
//! Video (FLV spec §E.4.3.1): `FrameType(4) | CodecID(4)`, then for AVC
//! `AVCPacketType(8)`, `CompositionTime(SI24)` and the payload. Enhanced
//! RTMP sets the top bit of the first byte (`IsExHeader`) and follows it
//! with a FourCC (`hvc1`, `av01`, `vp09`, …) instead of a codec id.
//! Audio (§E.4.2.1): `SoundFormat(4) | rate(2) | size(1) | type(1)`, then
//! for AAC `AACPacketType(8)` and the payload; Enhanced RTMP audio uses
//! sound format 9 with a FourCC.

/// FLV codec id of H.264/AVC.
const CODEC_AVC: u8 = 7;
/// FLV sound format of AAC.
const SOUND_AAC: u8 = 10;
/// Enhanced RTMP's "extended header" sound format (a FourCC follows).
const SOUND_EX_HEADER: u8 = 9;
/// FLV video frame type of a video info / command frame (no picture).
const FRAME_COMMAND: u8 = 5;

/// What a video message holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Video<'a> {
    /// AVCDecoderConfigurationRecord (SPS/PPS, NAL length size).
    AvcConfig(&'a [u8]),
    /// One access unit of length-prefixed NAL units.
    AvcFrame {
        keyframe: bool,
        /// Presentation minus decode time, milliseconds.
        composition_ms: i32,
        data: &'a [u8],
    },
    /// End of sequence, or a command frame: nothing to forward.
    Nothing,
    /// An Enhanced RTMP codec (HEVC, AV1, VP9, …) named by its FourCC.
    Enhanced([u8; 4]),
    /// A legacy FLV codec other than H.264 (Sorenson, VP6, …).
    OtherCodec(u8),
}

/// What an audio message holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Audio<'a> {
    /// AudioSpecificConfig.
    AacConfig(&'a [u8]),
    /// One raw AAC frame.
    AacFrame(&'a [u8]),
    /// An Enhanced RTMP audio codec (Opus, AC-3, …) named by its FourCC.
    Enhanced([u8; 4]),
    /// A legacy FLV sound format other than AAC (MP3, Speex, PCM, …).
    OtherCodec(u8),
}

/// A tag body too short for the header its first byte announces, or a
/// packet type that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlvError {
    #[error("tag body of {len} bytes is shorter than its header")]
    Truncated { len: usize },
    #[error("unknown AVC packet type {0}")]
    AvcPacketType(u8),
    #[error("unknown AAC packet type {0}")]
    AacPacketType(u8),
}

pub fn parse_video(body: &[u8]) -> Result<Video<'_>, FlvError> {
    let truncated = FlvError::Truncated { len: body.len() };
    let first = *body.first().ok_or(truncated.clone())?;
    if first & 0x80 != 0 {
        let fourcc = body.get(1..5).ok_or(truncated)?;
        let mut f = [0u8; 4];
        f.copy_from_slice(fourcc);
        return Ok(Video::Enhanced(f));
    }
    let frame_type = first >> 4;
    let codec = first & 0x0f;
    if codec != CODEC_AVC {
        return Ok(Video::OtherCodec(codec));
    }
    if frame_type == FRAME_COMMAND {
        return Ok(Video::Nothing);
    }
    let header = body.get(1..5).ok_or(truncated)?;
    let payload = &body[5..];
    match header[0] {
        0 => Ok(Video::AvcConfig(payload)),
        1 => {
            // SI24, big endian: sign-extend from bit 23.
            let raw =
                (i32::from(header[1]) << 16) | (i32::from(header[2]) << 8) | i32::from(header[3]);
            let composition_ms = (raw << 8) >> 8;
            Ok(Video::AvcFrame {
                keyframe: frame_type == 1,
                composition_ms,
                data: payload,
            })
        }
        2 => Ok(Video::Nothing),
        t => Err(FlvError::AvcPacketType(t)),
    }
}

pub fn parse_audio(body: &[u8]) -> Result<Audio<'_>, FlvError> {
    let truncated = FlvError::Truncated { len: body.len() };
    let first = *body.first().ok_or(truncated.clone())?;
    let format = first >> 4;
    if format == SOUND_EX_HEADER {
        let fourcc = body.get(1..5).ok_or(truncated)?;
        let mut f = [0u8; 4];
        f.copy_from_slice(fourcc);
        return Ok(Audio::Enhanced(f));
    }
    if format != SOUND_AAC {
        return Ok(Audio::OtherCodec(format));
    }
    let packet_type = *body.get(1).ok_or(truncated)?;
    let payload = &body[2..];
    match packet_type {
        0 => Ok(Audio::AacConfig(payload)),
        1 => Ok(Audio::AacFrame(payload)),
        t => Err(FlvError::AacPacketType(t)),
    }
}

/// A FourCC for a log line (printable ASCII, else hex).
pub fn fourcc_text(f: [u8; 4]) -> String {
    if f.iter().all(|b| b.is_ascii_graphic()) {
        f.iter().map(|b| char::from(*b)).collect()
    } else {
        format!("0x{:02x}{:02x}{:02x}{:02x}", f[0], f[1], f[2], f[3])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_frames_config_and_negative_composition_time() {
        assert_eq!(
            parse_video(&[0x17, 0, 0, 0, 0, 1, 2]),
            Ok(Video::AvcConfig(&[1, 2]))
        );
        assert_eq!(
            parse_video(&[0x27, 1, 0xff, 0xff, 0xfe, 9]),
            Ok(Video::AvcFrame {
                keyframe: false,
                composition_ms: -2,
                data: &[9]
            })
        );
        assert_eq!(
            parse_video(&[0x17, 1, 0, 0, 66, 9]),
            Ok(Video::AvcFrame {
                keyframe: true,
                composition_ms: 66,
                data: &[9]
            })
        );
        assert_eq!(parse_video(&[0x17, 2, 0, 0, 0]), Ok(Video::Nothing));
        assert_eq!(parse_video(&[0x57, 0]), Ok(Video::Nothing));
    }

    #[test]
    fn enhanced_and_other_codecs_are_named() {
        assert_eq!(
            parse_video(&[0x90, b'h', b'v', b'c', b'1', 0]),
            Ok(Video::Enhanced(*b"hvc1"))
        );
        assert_eq!(parse_video(&[0x12, 0]), Ok(Video::OtherCodec(2)));
        assert_eq!(
            parse_audio(&[0x90, b'O', b'p', b'u', b's']),
            Ok(Audio::Enhanced(*b"Opus"))
        );
        assert_eq!(parse_audio(&[0x2f, 0]), Ok(Audio::OtherCodec(2)));
        assert_eq!(fourcc_text(*b"av01"), "av01");
        assert_eq!(fourcc_text([0, 1, 2, 3]), "0x00010203");
    }

    #[test]
    fn aac_config_and_frames() {
        assert_eq!(
            parse_audio(&[0xaf, 0, 0x12, 0x10]),
            Ok(Audio::AacConfig(&[0x12, 0x10]))
        );
        assert_eq!(parse_audio(&[0xaf, 1, 7]), Ok(Audio::AacFrame(&[7])));
    }

    #[test]
    fn every_short_prefix_is_an_error_or_a_value_never_a_panic() {
        let samples: [&[u8]; 4] = [
            &[0x17, 1, 0, 0, 0, 5, 5],
            &[0x90, b'h', b'v', b'c', b'1'],
            &[0xaf, 1, 7],
            &[0x9f, b'O', b'p', b'u', b's'],
        ];
        for s in samples {
            for n in 0..=s.len() {
                let _ = parse_video(&s[..n]);
                let _ = parse_audio(&s[..n]);
            }
        }
        assert!(matches!(
            parse_video(&[]),
            Err(FlvError::Truncated { len: 0 })
        ));
        assert!(matches!(
            parse_video(&[0x17, 9, 0, 0, 0]),
            Err(FlvError::AvcPacketType(9))
        ));
    }
}
