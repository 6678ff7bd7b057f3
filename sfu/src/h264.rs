//! The little of H.264 the forwarder needs to know: where the SPS is and what
//! profile it declares, and which signalled profile a viewer should be told.
//!
//! OBS (and other encoders) advertise `profile-level-id=42e01f` in SDP whatever
//! they encode, so the truth comes from the bitstream.

/// A `profile-level-id` value as signalled in SDP (`profile_idc`,
/// `constraint_set` flags, `level_idc`, one byte each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProfileLevelId(pub u32);

impl ProfileLevelId {
    pub fn profile_idc(self) -> u8 {
        (self.0 >> 16) as u8
    }

    pub fn constraints(self) -> u8 {
        (self.0 >> 8) as u8
    }

    pub fn level_idc(self) -> u8 {
        self.0 as u8
    }

    /// Parses the six hex digits of an SDP `profile-level-id`.
    pub fn parse_hex(s: &str) -> Option<ProfileLevelId> {
        if s.len() != 6 {
            return None;
        }
        u32::from_str_radix(s, 16).ok().map(ProfileLevelId)
    }

    /// Rank from least to most capable decoder: Baseline, Constrained
    /// Baseline, Main, High (and anything above High counts as High).
    fn rank(self) -> u8 {
        match self.profile_idc() {
            66 if self.constraints() & 0x40 != 0 => 1, // constrained baseline
            66 => 0,
            77 => 2,
            88 => 1, // extended: closest to baseline for decoding purposes
            _ => 3,
        }
    }
}

impl std::fmt::Display for ProfileLevelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:06x}", self.0)
    }
}

/// Finds the first sequence parameter set in an Annex-B access unit and
/// returns the profile it declares.
pub fn sps_profile(annex_b: &[u8]) -> Option<ProfileLevelId> {
    nal_units(annex_b).find_map(|nal| {
        let header = *nal.first()?;
        if header & 0x1f != 7 {
            return None;
        }
        let b = nal.get(1..4)?;
        Some(ProfileLevelId(
            (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]),
        ))
    })
}

/// Iterates the NAL units of an Annex-B byte stream (start codes of three or
/// four bytes).
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let start = find_start_code(data, pos)?;
        let begin = start.0 + start.1;
        let end = find_start_code(data, begin).map_or(data.len(), |(at, _)| at);
        pos = end;
        Some(&data[begin..end])
    })
}

/// Returns (position, length) of the next Annex-B start code (three or
/// four bytes) at or after `from`.
///
/// Every byte of every frame passes through here (the publisher's frames, the
/// LL-HLS packager's conversion to AVCC), so the scan for `00 00 01` is
/// `memchr`'s vectorised substring search rather than a byte loop.
pub fn find_start_code(data: &[u8], from: usize) -> Option<(usize, usize)> {
    let at = from + memchr::memmem::find(data.get(from..)?, &[0, 0, 1])?;
    if at > from && data[at - 1] == 0 {
        Some((at - 1, 4))
    } else {
        Some((at, 3))
    }
}

/// Chooses which of the profiles a viewer offered it should be told about.
///
/// A viewer that offered the stream's real profile gets that one; otherwise
/// the offered profile closest in capability (ties go to the more capable,
/// since real decoders handle more than they advertise).
pub fn choose_profile(real: ProfileLevelId, offered: &[ProfileLevelId]) -> Option<ProfileLevelId> {
    if let Some(exact) = offered
        .iter()
        .filter(|p| p.profile_idc() == real.profile_idc() && p.rank() == real.rank())
        .max_by_key(|p| p.level_idc())
    {
        return Some(*exact);
    }
    offered
        .iter()
        .min_by_key(|p| {
            let distance = (i16::from(p.rank()) - i16::from(real.rank())).unsigned_abs();
            // Lower is better: nearest rank, then the more capable, then the higher level.
            (distance, 3 - p.rank(), 255 - p.level_idc())
        })
        .copied()
}

/// Extracts the packetization-mode=1 H.264 `profile-level-id`s from an SDP
/// offer's `a=fmtp` lines, in offer order, without duplicates.
pub fn offered_profiles(sdp: &str) -> Vec<ProfileLevelId> {
    let h264_pts: Vec<&str> = sdp
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=rtpmap:"))
        .filter_map(|rest| {
            let (pt, codec) = rest.split_once(' ')?;
            codec
                .to_ascii_lowercase()
                .starts_with("h264/")
                .then_some(pt)
        })
        .collect();
    let mut out = Vec::new();
    for rest in sdp.lines().filter_map(|l| l.trim().strip_prefix("a=fmtp:")) {
        let Some((pt, params)) = rest.split_once(' ') else {
            continue;
        };
        if !h264_pts.contains(&pt) {
            continue;
        }
        let mut plid = None;
        let mut mode = 0;
        for kv in params.split(';') {
            match kv.trim().split_once('=') {
                Some(("profile-level-id", v)) => plid = ProfileLevelId::parse_hex(v.trim()),
                Some(("packetization-mode", v)) => mode = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        if let (Some(p), 1) = (plid, mode) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HIGH: ProfileLevelId = ProfileLevelId(0x64001f);
    const MAIN: ProfileLevelId = ProfileLevelId(0x4d001f);
    const CB: ProfileLevelId = ProfileLevelId(0x42e01f);
    const BASE: ProfileLevelId = ProfileLevelId(0x42001f);

    #[test]
    fn sps_profile_is_read_from_the_bitstream() {
        let au = [
            0, 0, 0, 1, 0x67, 0x64, 0x00, 0x28, 0xac, 0, 0, 1, 0x68, 0xee, 0, 0, 1, 0x65, 0x88,
        ];
        assert_eq!(sps_profile(&au), Some(ProfileLevelId(0x640028)));
        assert_eq!(sps_profile(&[0, 0, 1, 0x41, 0x9a]), None);
        assert_eq!(sps_profile(&[0, 0, 1, 0x67]), None, "truncated SPS");
        assert_eq!(sps_profile(&[]), None);
    }

    #[test]
    fn viewer_offering_the_real_profile_gets_it() {
        assert_eq!(choose_profile(HIGH, &[BASE, CB, MAIN, HIGH]), Some(HIGH));
        assert_eq!(choose_profile(CB, &[BASE, CB, MAIN]), Some(CB));
    }

    #[test]
    fn otherwise_the_closest_offered_profile() {
        // Chromium's receive-only offer never lists High.
        assert_eq!(choose_profile(HIGH, &[BASE, CB, MAIN]), Some(MAIN));
        assert_eq!(choose_profile(HIGH, &[BASE, CB]), Some(CB));
        assert_eq!(choose_profile(MAIN, &[BASE, HIGH]), Some(HIGH));
        assert_eq!(choose_profile(HIGH, &[]), None);
    }

    #[test]
    fn offered_profiles_come_from_h264_fmtp_lines_with_mode_1() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 102 103 104\r\n\
            a=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\n\
            a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
            a=rtpmap:103 H264/90000\r\n\
            a=fmtp:103 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f\r\n\
            a=rtpmap:104 h264/90000\r\n\
            a=fmtp:104 profile-level-id=4d001f;packetization-mode=1\r\n\
            a=fmtp:96 profile-level-id=640c1f;packetization-mode=1\r\n";
        assert_eq!(offered_profiles(sdp), vec![BASE, MAIN]);
    }

    /// The scan a byte at a time, as it was before `memchr`: the reference.
    fn start_code_by_bytes(data: &[u8], from: usize) -> Option<(usize, usize)> {
        let mut i = from;
        while i + 3 <= data.len() {
            if data[i] == 0 && data[i + 1] == 0 {
                if data[i + 2] == 1 {
                    return Some((i, 3));
                }
                if data[i + 2] == 0 && data.get(i + 3) == Some(&1) {
                    return Some((i, 4));
                }
            }
            i += 1;
        }
        None
    }

    #[test]
    fn start_codes_are_found_where_a_byte_by_byte_scan_finds_them() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        for len in 0..200 {
            // Mostly zeros and ones, so start codes of both lengths, runs of zeros before them
            // and codes cut off at the end all occur.
            let data: Vec<u8> = (0..len)
                .map(|_| [0, 0, 0, 1, 0x65][rng.gen_range(0..5)])
                .collect();
            for from in 0..=len + 1 {
                assert_eq!(
                    find_start_code(&data, from),
                    start_code_by_bytes(&data, from),
                    "{data:?} from {from}"
                );
            }
        }
        assert_eq!(find_start_code(&[0, 0, 0, 0, 1], 0), Some((1, 4)));
        assert_eq!(find_start_code(&[0, 0, 0, 1], 1), Some((1, 3)));
    }
}
