//! Stream thumbnails: a small JPEG of a live stream's latest keyframe.
//!
//! The packager keeps the last keyframe it saw ([`Keyframe`]: the access
//! unit as the publisher sent it, with the stream's parameter sets put in
//! front, since a keyframe alone may lack them). A thumbnail is made only
//! when one is asked for: one `openh264` decode of that keyframe (an IDR
//! decodes on its own), scaled to [`WIDTH`] wide, encoded as baseline JPEG
//! (`jpeg-encoder`). The HTTP side caches the result per stream for
//! [`MAX_AGE`], so however many pages show the stream, it costs at most
//! one decode per stream in that time; nothing is decoded for streams
//! nobody looks at.

use std::sync::Arc;
use std::time::Duration;

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;

/// Width of a thumbnail in pixels (smaller sources keep their width).
pub const WIDTH: usize = 320;
/// How long one thumbnail is served (and cached by browsers) before a
/// newer keyframe is decoded.
pub const MAX_AGE: Duration = Duration::from_secs(5);
/// JPEG quality (1–100).
const QUALITY: u8 = 75;

/// The latest keyframe of a stream, ready to decode on its own.
#[derive(Debug, Clone)]
pub struct Keyframe {
    /// Annex B: SPS, PPS, then the keyframe's NAL units.
    pub annex_b: Arc<[u8]>,
    /// Counts keyframes of the stream: a new value is a new picture.
    pub serial: u64,
}

/// Why no thumbnail could be made.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ThumbnailError {
    /// The decoder could not be made or refused the access unit.
    #[error("decoding the keyframe: {0}")]
    Decode(#[from] openh264::Error),
    /// The access unit decoded to no picture.
    #[error("the keyframe decoded to no picture")]
    NoPicture,
    /// The JPEG encoder refused the picture.
    #[error("encoding the JPEG: {0}")]
    Encode(#[from] jpeg_encoder::EncodingError),
}

/// `sps` and `pps` (NAL units without start codes) in front of `au`
/// (Annex B).
pub fn with_parameter_sets(sps: &[u8], pps: &[u8], au: &[u8]) -> Arc<[u8]> {
    let mut v = Vec::with_capacity(sps.len() + pps.len() + au.len() + 8);
    for nal in [sps, pps] {
        v.extend_from_slice(&[0, 0, 0, 1]);
        v.extend_from_slice(nal);
    }
    v.extend_from_slice(au);
    v.into()
}

/// Decodes `annex_b` (a keyframe with its parameter sets) and encodes it
/// as a JPEG at most `width` pixels wide. CPU-bound: call it off the
/// async runtime (`spawn_blocking`).
pub fn jpeg_of_keyframe(annex_b: &[u8], width: usize) -> Result<Vec<u8>, ThumbnailError> {
    let mut decoder = Decoder::new()?;
    let mut i420 = Vec::new();
    let decoded = decoder
        .decode(annex_b)?
        .map(|pic| scaled(&pic, width, &mut i420));
    let (w, h) = match decoded {
        Some(size) => size,
        None => decoder
            .flush_remaining()?
            .first()
            .map(|pic| scaled(pic, width, &mut i420))
            .ok_or(ThumbnailError::NoPicture)?,
    };
    if w == 0 || h == 0 {
        return Err(ThumbnailError::NoPicture);
    }
    let rgb = i420_to_rgb(&i420, w, h);
    let mut out = Vec::new();
    // Both sizes are at most the source's, which H.264 keeps far below
    // u16::MAX.
    let (w16, h16) = (
        u16::try_from(w).unwrap_or(u16::MAX),
        u16::try_from(h).unwrap_or(u16::MAX),
    );
    jpeg_encoder::Encoder::new(&mut out, QUALITY).encode(
        &rgb,
        w16,
        h16,
        jpeg_encoder::ColorType::Rgb,
    )?;
    Ok(out)
}

/// Scales `pic` to at most `width` wide (even sizes, aspect kept) into
/// packed I420; returns the size.
fn scaled(pic: &impl YUVSource, width: usize, out: &mut Vec<u8>) -> (usize, usize) {
    let (sw, sh) = pic.dimensions();
    if sw < 2 || sh < 2 {
        return (0, 0);
    }
    let w = width.min(sw) & !1;
    let h = ((sh * w / sw) & !1).max(2);
    crate::ladder::scale_i420(pic, w, h, out);
    (w, h)
}

/// BT.601 limited-range YCbCr (packed I420, even sizes) to RGB.
fn i420_to_rgb(i420: &[u8], w: usize, h: usize) -> Vec<u8> {
    let (y_plane, uv) = i420.split_at((w * h).min(i420.len()));
    let (u_plane, v_plane) = uv.split_at((w / 2 * (h / 2)).min(uv.len()));
    let mut rgb = Vec::with_capacity(w * h * 3);
    for row in 0..h {
        for col in 0..w {
            let c = (row / 2) * (w / 2) + col / 2;
            let y = f32::from(y_plane.get(row * w + col).copied().unwrap_or(16)) - 16.0;
            let u = f32::from(u_plane.get(c).copied().unwrap_or(128)) - 128.0;
            let v = f32::from(v_plane.get(c).copied().unwrap_or(128)) - 128.0;
            let y = 1.164 * y;
            for x in [y + 1.596 * v, y - 0.392 * u - 0.813 * v, y + 2.017 * u] {
                rgb.push(x.round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;
    use openh264::encoder::Encoder;
    use openh264::formats::YUVBuffer;

    /// A 640x360 picture, red on the left half, encoded as an IDR.
    fn idr() -> Vec<u8> {
        let (w, h) = (640usize, 360usize);
        let mut yuv = Vec::with_capacity(w * h * 3 / 2);
        for _ in 0..h {
            for x in 0..w {
                yuv.push(if x < w / 2 { 81 } else { 235 });
            }
        }
        for plane in [(90u8, 128u8), (240u8, 128u8)] {
            for _ in 0..h / 2 {
                for x in 0..w / 2 {
                    yuv.push(if x < w / 4 { plane.0 } else { plane.1 });
                }
            }
        }
        let pic = YUVBuffer::from_vec(yuv, w, h);
        let mut enc = match Encoder::new() {
            Ok(e) => e,
            Err(e) => panic!("encoder: {e}"),
        };
        match enc.encode(&pic) {
            Ok(b) => b.to_vec(),
            Err(e) => panic!("encode: {e}"),
        }
    }

    #[test]
    fn a_keyframe_becomes_a_small_jpeg_of_the_same_picture() {
        let jpeg = match jpeg_of_keyframe(&idr(), WIDTH) {
            Ok(j) => j,
            Err(e) => panic!("thumbnail: {e}"),
        };
        assert_eq!(&jpeg[..2], &[0xff, 0xd8], "JPEG start of image");
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xff, 0xd9], "JPEG end of image");
        // The frame header (SOF0) carries height then width.
        let sof = jpeg
            .windows(2)
            .position(|w| w == [0xff, 0xc0])
            .unwrap_or_else(|| panic!("no SOF0"));
        let h = u16::from_be_bytes([jpeg[sof + 5], jpeg[sof + 6]]);
        let w = u16::from_be_bytes([jpeg[sof + 7], jpeg[sof + 8]]);
        assert_eq!((w, h), (320, 180));
    }

    #[test]
    fn the_colours_survive() {
        let mut i420 = Vec::new();
        let mut decoder = match Decoder::new() {
            Ok(d) => d,
            Err(e) => panic!("decoder: {e}"),
        };
        let size = match decoder.decode(&idr()) {
            Ok(Some(pic)) => scaled(&pic, 64, &mut i420),
            other => panic!("no picture: {:?}", other.map(|p| p.is_some())),
        };
        assert_eq!(size, (64, 36));
        let rgb = i420_to_rgb(&i420, 64, 36);
        let px = |x: usize| &rgb[(18 * 64 + x) * 3..(18 * 64 + x) * 3 + 3];
        let (left, right) = (px(8), px(56));
        assert!(
            left[0] > 200 && left[1] < 60 && left[2] < 60,
            "red: {left:?}"
        );
        assert!(right.iter().all(|&c| c > 220), "white: {right:?}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(jpeg_of_keyframe(&[0, 0, 0, 1, 0x65, 1, 2, 3], WIDTH).is_err());
        assert!(jpeg_of_keyframe(&[], WIDTH).is_err());
    }
}
