//! The send-time stamp carried inside the video: an H.264 SEI NAL unit
//! (`user_data_unregistered`, payload type 5) with a fixed UUID, put in front
//! of the first slice of every access unit. The SFU forwards frames untouched,
//! so the viewer finds the same bytes and knows when (publisher clock, same
//! process) and in which order the frame was sent.
//!
//! Payload after the UUID: send time in µs since the run's epoch (u64 BE),
//! the frame's sequence number within its layer (u64 BE), the layer index (u8).

use sfu::h264::find_start_code;

/// Identifies our SEI among any others an encoder may emit
/// (`relaycast-load` in ASCII, padded).
pub const STAMP_UUID: [u8; 16] = *b"relaycast-load\x00\x01";

const PAYLOAD_TYPE_USER_DATA_UNREGISTERED: u8 = 5;
const NAL_TYPE_SEI: u8 = 6;
const BODY_LEN: usize = 8 + 8 + 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Microseconds since the run's epoch when the publisher wrote the frame.
    pub send_us: u64,
    /// Frame number within its layer, from 0, without gaps.
    pub seq: u64,
    /// Simulcast layer index (0 = smallest).
    pub layer: u8,
}

/// One NAL unit of an Annex-B stream: where its start code begins, and its
/// bytes (header included, start code excluded).
struct NalPos {
    start_code_at: usize,
    begin: usize,
    end: usize,
}

fn nal_positions(data: &[u8]) -> impl Iterator<Item = NalPos> + '_ {
    let mut next = find_start_code(data, 0);
    std::iter::from_fn(move || {
        let (at, len) = next?;
        let begin = at + len;
        next = find_start_code(data, begin);
        let end = next.map_or(data.len(), |(n, _)| n);
        Some(NalPos {
            start_code_at: at,
            begin,
            end,
        })
    })
}

/// Iterates the NAL units (header byte first) of an Annex-B access unit.
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    nal_positions(data).map(move |p| &data[p.begin..p.end])
}

/// Adds emulation-prevention bytes (00 00 0x → 00 00 03 0x for x ≤ 3).
fn escape(raw: &[u8], out: &mut Vec<u8>) {
    let mut zeros = 0;
    for &b in raw {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
}

/// Removes emulation-prevention bytes.
fn unescape(escaped: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(escaped.len());
    let mut zeros = 0;
    for &b in escaped {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    out
}

/// The SEI NAL unit (start code included) carrying `stamp`.
pub fn sei_nal(stamp: &Stamp) -> Vec<u8> {
    let mut rbsp = Vec::with_capacity(2 + 16 + BODY_LEN + 1);
    rbsp.push(PAYLOAD_TYPE_USER_DATA_UNREGISTERED);
    rbsp.push((16 + BODY_LEN) as u8);
    rbsp.extend_from_slice(&STAMP_UUID);
    rbsp.extend_from_slice(&stamp.send_us.to_be_bytes());
    rbsp.extend_from_slice(&stamp.seq.to_be_bytes());
    rbsp.push(stamp.layer);
    rbsp.push(0x80); // rbsp_trailing_bits
    let mut nal = vec![0, 0, 0, 1, NAL_TYPE_SEI];
    escape(&rbsp, &mut nal);
    nal
}

/// A copy of the Annex-B access unit `au` with the stamp's SEI inserted before
/// its first slice (after SPS/PPS, where H.264 wants SEI), or appended if it
/// has no slice.
pub fn stamp_access_unit(au: &[u8], stamp: &Stamp) -> Vec<u8> {
    let sei = sei_nal(stamp);
    let at = nal_positions(au)
        .find(|p| {
            au.get(p.begin)
                .is_some_and(|h| (1..=5).contains(&(h & 0x1f)))
        })
        .map_or(au.len(), |p| p.start_code_at);
    let mut out = Vec::with_capacity(au.len() + sei.len());
    out.extend_from_slice(&au[..at]);
    out.extend_from_slice(&sei);
    out.extend_from_slice(&au[at..]);
    out
}

/// Reads a payload-type or payload-size field of an SEI message (0xFF runs).
fn read_sei_number(data: &[u8], pos: &mut usize) -> Option<usize> {
    let mut value = 0usize;
    loop {
        let b = *data.get(*pos)?;
        *pos += 1;
        value = value.checked_add(usize::from(b))?;
        if b != 0xff {
            return Some(value);
        }
    }
}

/// Finds our stamp in an Annex-B access unit. Anything malformed is `None`.
///
/// Stops at the first slice: SEI precedes it, and not scanning the slice data
/// for start codes keeps a viewer's cost per frame independent of its size.
pub fn read_stamp(au: &[u8]) -> Option<Stamp> {
    let mut next = find_start_code(au, 0);
    while let Some((at, len)) = next {
        let begin = at + len;
        let nal_type = au.get(begin)? & 0x1f;
        if (1..=5).contains(&nal_type) {
            return None;
        }
        next = find_start_code(au, begin);
        if nal_type == NAL_TYPE_SEI {
            let end = next.map_or(au.len(), |(n, _)| n);
            if let Some(stamp) = au.get(begin + 1..end).and_then(|b| parse_sei(&unescape(b))) {
                return Some(stamp);
            }
        }
    }
    None
}

fn parse_sei(rbsp: &[u8]) -> Option<Stamp> {
    let mut pos = 0;
    // Several SEI messages may share a NAL unit; stop at the trailing bits.
    while pos < rbsp.len() && rbsp[pos] != 0x80 {
        let ptype = read_sei_number(rbsp, &mut pos)?;
        let size = read_sei_number(rbsp, &mut pos)?;
        let payload = rbsp.get(pos..pos.checked_add(size)?)?;
        pos += size;
        if ptype == usize::from(PAYLOAD_TYPE_USER_DATA_UNREGISTERED)
            && payload.len() >= 16 + BODY_LEN
            && payload[..16] == STAMP_UUID
        {
            let body = &payload[16..];
            return Some(Stamp {
                send_us: u64::from_be_bytes(body.get(0..8)?.try_into().ok()?),
                seq: u64::from_be_bytes(body.get(8..16)?.try_into().ok()?),
                layer: *body.get(16)?,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xda];
    const PPS: &[u8] = &[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80];
    const IDR: &[u8] = &[0, 0, 1, 0x65, 0x88, 0x84, 0x00, 0x00, 0x03, 0x01, 0xff];

    fn keyframe() -> Vec<u8> {
        [SPS, PPS, IDR].concat()
    }

    #[test]
    fn stamp_round_trips_through_an_access_unit() {
        let stamp = Stamp {
            send_us: 123_456_789,
            seq: 42,
            layer: 2,
        };
        let au = stamp_access_unit(&keyframe(), &stamp);
        assert_eq!(read_stamp(&au), Some(stamp));
        // The SEI sits after SPS/PPS and before the slice; the rest is untouched.
        let types: Vec<u8> = nal_units(&au).map(|n| n[0] & 0x1f).collect();
        assert_eq!(types, vec![7, 8, 6, 5]);
        let without: Vec<&[u8]> = nal_units(&au).filter(|n| n[0] & 0x1f != 6).collect();
        let keyframe = keyframe();
        let original: Vec<&[u8]> = nal_units(&keyframe).collect();
        assert_eq!(without, original);
    }

    #[test]
    fn values_full_of_zero_bytes_survive_emulation_prevention() {
        // Values whose big-endian bytes contain 00 00 00 / 00 00 01 runs must
        // be escaped, or they would read as start codes.
        for (send_us, seq) in [
            (0, 0),
            (1, 0x0000_0000_0001_0000),
            (0x0000_0100_0000_0003, 2),
            (u64::MAX, u64::MAX),
            (0x0300_0000_0000_0000, 0x0000_0000_0000_0300),
        ] {
            let stamp = Stamp {
                send_us,
                seq,
                layer: 0,
            };
            let nal = sei_nal(&stamp);
            assert_eq!(
                find_start_code(&nal, 4),
                None,
                "no start code inside the SEI for {stamp:?}"
            );
            let au = stamp_access_unit(IDR, &stamp);
            assert_eq!(read_stamp(&au), Some(stamp));
        }
    }

    #[test]
    fn foreign_sei_and_garbage_are_ignored() {
        // An SEI with another UUID, then a truncated one of ours.
        let mut other = vec![0, 0, 0, 1, 6, 5, 17];
        other.extend_from_slice(&[0xaa; 17]);
        other.push(0x80);
        assert_eq!(read_stamp(&other), None);
        let mut truncated = vec![0, 0, 0, 1, 6, 5, 33];
        truncated.extend_from_slice(&STAMP_UUID);
        assert_eq!(read_stamp(&truncated), None);
        assert_eq!(read_stamp(&[]), None);
        assert_eq!(read_stamp(&[0, 0, 1]), None);
        assert_eq!(read_stamp(&[0, 0, 1, 6, 0xff, 0xff]), None);
        // Ours after a foreign message in the same NAL unit is still found.
        let stamp = Stamp {
            send_us: 7,
            seq: 8,
            layer: 1,
        };
        let ours = sei_nal(&stamp);
        let mut both = vec![0, 0, 0, 1, 6, 1, 1, 0x42];
        both.extend_from_slice(&ours[5..]);
        assert_eq!(read_stamp(&both), Some(stamp));
    }
}
