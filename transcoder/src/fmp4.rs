//! CMAF fragmented MP4 (ISO/IEC 14496-12, 14496-15, ISO/IEC 23000-19):
//! the init segment of one track (`ftyp` + `moov` with `mvex`) and its
//! fragments (`moof` + `mdat`).
//!
//! Hand-written rather than built on an MP4 crate: `mp4` (alfg) writes
//! progressive files through `Write + Seek` and its fragment boxes are read
//! oriented (no `avcC`-from-Annex-B, no Opus `dOps`); `shiguredo_mp4`, whose
//! sans-IO box encoders are the model here, needs a newer Rust than this
//! workspace's minimum. The set of boxes a live CMAF track needs is small and
//! fixed, every one is written into a byte vector, and each is checked by
//! the tests below and by ffprobe in the integration tests.

/// Codec-specific part of a track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackCodec {
    /// H.264 in `avc1` with its `avcC` built from one SPS and one PPS
    /// (NAL units without start codes).
    H264 {
        sps: Vec<u8>,
        pps: Vec<u8>,
        width: u16,
        height: u16,
        /// `chroma_format_idc`, `bit_depth_luma_minus8`,
        /// `bit_depth_chroma_minus8` for the High-profile `avcC` extension.
        chroma: (u8, u8, u8),
    },
    /// Opus in `Opus` with `dOps` (Opus in ISOBMFF, mapping family 0).
    Opus { channels: u8, pre_skip: u16 },
    /// AAC in `mp4a` with `esds` carrying the AudioSpecificConfig.
    Aac {
        channels: u8,
        sample_rate: u32,
        asc: Vec<u8>,
    },
}

impl TrackCodec {
    pub fn is_video(&self) -> bool {
        matches!(self, TrackCodec::H264 { .. })
    }
}

/// One track's description, enough to write its init segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub track_id: u32,
    pub timescale: u32,
    pub codec: TrackCodec,
}

/// A sample of a fragment, already in MP4 form (H.264: length-prefixed NAL
/// units).
#[derive(Debug, Clone)]
pub struct Sample<'a> {
    pub duration: u32,
    pub keyframe: bool,
    pub data: &'a [u8],
}

/// Writes boxes into a byte vector; sizes are patched when a box closes.
struct BoxWriter {
    buf: Vec<u8>,
    open: Vec<usize>,
}

impl BoxWriter {
    fn new() -> Self {
        BoxWriter {
            buf: Vec::with_capacity(1024),
            open: Vec::new(),
        }
    }

    fn start(&mut self, kind: &[u8; 4]) {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        self.buf.extend_from_slice(kind);
    }

    fn start_full(&mut self, kind: &[u8; 4], version: u8, flags: u32) {
        self.start(kind);
        self.u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
    }

    fn end(&mut self) {
        // Invariant: every `end` pairs with a `start` in this module.
        let at = self.open.pop().expect("box end without start");
        let size = u32::try_from(self.buf.len() - at).unwrap_or(u32::MAX);
        self.buf[at..at + 4].copy_from_slice(&size.to_be_bytes());
    }

    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }
    fn matrix(&mut self) {
        for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
            self.u32(v);
        }
    }
}

/// The init segment (`ftyp` + `moov`) of a single-track CMAF file.
pub fn init_segment(track: &TrackInfo) -> Vec<u8> {
    let mut w = BoxWriter::new();
    w.start(b"ftyp");
    w.bytes(b"iso6");
    w.u32(0);
    for brand in [b"iso6", b"cmfc", b"mp41"] {
        w.bytes(brand);
    }
    w.end();

    w.start(b"moov");
    w.start_full(b"mvhd", 0, 0);
    w.u32(0); // creation_time
    w.u32(0); // modification_time
    w.u32(1000); // timescale
    w.u32(0); // duration: unknown (fragmented)
    w.u32(0x0001_0000); // rate 1.0
    w.u16(0x0100); // volume 1.0
    w.zeros(10);
    w.matrix();
    w.zeros(24); // pre_defined
    w.u32(track.track_id + 1); // next_track_ID
    w.end();

    let is_video = track.codec.is_video();
    w.start(b"trak");
    w.start_full(b"tkhd", 0, 0x3); // enabled, in movie
    w.u32(0);
    w.u32(0);
    w.u32(track.track_id);
    w.u32(0); // reserved
    w.u32(0); // duration
    w.zeros(8);
    w.u16(0); // layer
    w.u16(0); // alternate_group
    w.u16(if is_video { 0 } else { 0x0100 });
    w.u16(0);
    w.matrix();
    let (width, height) = match &track.codec {
        TrackCodec::H264 { width, height, .. } => (*width, *height),
        TrackCodec::Opus { .. } | TrackCodec::Aac { .. } => (0, 0),
    };
    w.u32(u32::from(width) << 16);
    w.u32(u32::from(height) << 16);
    w.end();

    w.start(b"mdia");
    w.start_full(b"mdhd", 0, 0);
    w.u32(0);
    w.u32(0);
    w.u32(track.timescale);
    w.u32(0);
    w.u16(0x55c4); // "und"
    w.u16(0);
    w.end();
    w.start_full(b"hdlr", 0, 0);
    w.u32(0);
    w.bytes(if is_video { b"vide" } else { b"soun" });
    w.zeros(12);
    w.bytes(if is_video {
        b"VideoHandler\0"
    } else {
        b"SoundHandler\0"
    });
    w.end();
    w.start(b"minf");
    if is_video {
        w.start_full(b"vmhd", 0, 1);
        w.zeros(8);
        w.end();
    } else {
        w.start_full(b"smhd", 0, 0);
        w.zeros(4);
        w.end();
    }
    w.start(b"dinf");
    w.start_full(b"dref", 0, 0);
    w.u32(1);
    w.start_full(b"url ", 0, 1); // media in the same file
    w.end();
    w.end();
    w.end();
    w.start(b"stbl");
    w.start_full(b"stsd", 0, 0);
    w.u32(1);
    sample_entry(&mut w, &track.codec);
    w.end();
    for empty in [b"stts", b"stsc", b"stco"] {
        w.start_full(empty, 0, 0);
        w.u32(0);
        w.end();
    }
    w.start_full(b"stsz", 0, 0);
    w.u32(0);
    w.u32(0);
    w.end();
    w.end(); // stbl
    w.end(); // minf
    w.end(); // mdia
    w.end(); // trak

    w.start(b"mvex");
    w.start_full(b"trex", 0, 0);
    w.u32(track.track_id);
    w.u32(1); // default_sample_description_index
    w.u32(0);
    w.u32(0);
    w.u32(0);
    w.end();
    w.end();
    w.end(); // moov
    w.buf
}

fn sample_entry(w: &mut BoxWriter, codec: &TrackCodec) {
    match codec {
        TrackCodec::H264 {
            sps,
            pps,
            width,
            height,
            chroma,
        } => {
            w.start(b"avc1");
            w.zeros(6);
            w.u16(1); // data_reference_index
            w.zeros(16); // pre_defined, reserved
            w.u16(*width);
            w.u16(*height);
            w.u32(0x0048_0000); // 72 dpi
            w.u32(0x0048_0000);
            w.u32(0);
            w.u16(1); // frame_count
            w.zeros(32); // compressorname
            w.u16(0x0018); // depth
            w.u16(0xffff); // pre_defined = -1
            w.start(b"avcC");
            w.u8(1);
            let profile = sps.get(1).copied().unwrap_or(0);
            w.u8(profile);
            w.u8(sps.get(2).copied().unwrap_or(0));
            w.u8(sps.get(3).copied().unwrap_or(0));
            w.u8(0xfc | 3); // 4-byte NAL lengths
            w.u8(0xe0 | 1);
            w.u16(u16::try_from(sps.len()).unwrap_or(u16::MAX));
            w.bytes(sps);
            w.u8(1);
            w.u16(u16::try_from(pps.len()).unwrap_or(u16::MAX));
            w.bytes(pps);
            if matches!(profile, 100 | 110 | 122 | 144) {
                w.u8(0xfc | (chroma.0 & 3));
                w.u8(0xf8 | (chroma.1 & 7));
                w.u8(0xf8 | (chroma.2 & 7));
                w.u8(0); // no SPS extensions
            }
            w.end();
            w.end();
        }
        TrackCodec::Opus { channels, pre_skip } => {
            w.start(b"Opus");
            w.zeros(6);
            w.u16(1);
            w.zeros(8);
            w.u16(u16::from(*channels));
            w.u16(16); // samplesize
            w.u32(0);
            w.u32(48_000 << 16);
            w.start(b"dOps");
            w.u8(0); // version
            w.u8(*channels);
            w.u16(*pre_skip);
            w.u32(48_000); // input sample rate
            w.u16(0); // output gain
            w.u8(0); // channel mapping family 0: mono or stereo
            w.end();
            w.end();
        }
        TrackCodec::Aac {
            channels,
            sample_rate,
            asc,
        } => {
            w.start(b"mp4a");
            w.zeros(6);
            w.u16(1);
            w.zeros(8);
            w.u16(u16::from(*channels));
            w.u16(16);
            w.u32(0);
            w.u32((*sample_rate).min(65_535) << 16);
            // ISO/IEC 14496-1 descriptors; every length fits one byte here.
            let asc_len = asc.len().min(100) as u8;
            let dcd_len = 13 + 2 + asc_len;
            let es_len = 3 + 2 + dcd_len + 3;
            w.start_full(b"esds", 0, 0);
            w.u8(0x03); // ES_Descriptor
            w.u8(es_len);
            w.u16(0); // ES_ID
            w.u8(0); // flags
            w.u8(0x04); // DecoderConfigDescriptor
            w.u8(dcd_len);
            w.u8(0x40); // MPEG-4 Audio
            w.u8(0x15); // AudioStream, upStream 0, reserved 1
            w.bytes(&[0, 0, 0]); // bufferSizeDB
            w.u32(0); // maxBitrate
            w.u32(0); // avgBitrate
            w.u8(0x05); // DecoderSpecificInfo
            w.u8(asc_len);
            w.bytes(&asc[..usize::from(asc_len)]);
            w.u8(0x06); // SLConfigDescriptor
            w.u8(1);
            w.u8(0x02);
            w.end();
            w.end();
        }
    }
}

/// `sample_flags` of ISO/IEC 14496-12 8.8.3.1: a sync sample depends on
/// nothing; any other video sample depends on others and is not a sync
/// sample.
fn sample_flags(keyframe: bool) -> u32 {
    if keyframe {
        0x0200_0000
    } else {
        0x0101_0000
    }
}

/// One fragment (`moof` + `mdat`) of `samples`, the first decoded at
/// `base_decode_time` (in the track's timescale).
pub fn fragment(
    sequence: u32,
    track_id: u32,
    base_decode_time: u64,
    samples: &[Sample],
) -> Vec<u8> {
    let mut w = BoxWriter::new();
    w.start(b"moof");
    w.start_full(b"mfhd", 0, 0);
    w.u32(sequence);
    w.end();
    w.start(b"traf");
    w.start_full(b"tfhd", 0, 0x02_0000); // default-base-is-moof
    w.u32(track_id);
    w.end();
    w.start_full(b"tfdt", 1, 0);
    w.u64(base_decode_time);
    w.end();
    // data-offset, sample-duration, sample-size, sample-flags present.
    w.start_full(b"trun", 0, 0x000_0701);
    w.u32(u32::try_from(samples.len()).unwrap_or(u32::MAX));
    let data_offset_at = w.buf.len();
    w.u32(0);
    for s in samples {
        w.u32(s.duration);
        w.u32(u32::try_from(s.data.len()).unwrap_or(u32::MAX));
        w.u32(sample_flags(s.keyframe));
    }
    w.end(); // trun
    w.end(); // traf
    w.end(); // moof
    let moof_len = w.buf.len();
    let data_offset = u32::try_from(moof_len + 8).unwrap_or(u32::MAX);
    w.buf[data_offset_at..data_offset_at + 4].copy_from_slice(&data_offset.to_be_bytes());
    let payload: usize = samples.iter().map(|s| s.data.len()).sum();
    w.buf.reserve(payload + 8);
    w.start(b"mdat");
    for s in samples {
        w.bytes(s.data);
    }
    w.end();
    w.buf
}

/// Annex B access unit → 4-byte length-prefixed NAL units, leaving out
/// access unit delimiters and, when `strip_parameter_sets`, the SPS and PPS
/// (they live in the `avcC` of the init segment).
pub fn annex_b_to_avcc(annex_b: &[u8], strip_parameter_sets: bool, out: &mut Vec<u8>) {
    for nal in sfu::h264::nal_units(annex_b) {
        let Some(&header) = nal.first() else { continue };
        let kind = header & 0x1f;
        if kind == 9 || (strip_parameter_sets && (kind == 7 || kind == 8)) {
            continue;
        }
        let len = u32::try_from(nal.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(nal);
    }
}

/// Walks ISO BMFF boxes: (type, payload) at each level. For tests and for
/// reading our own output back.
pub fn boxes(data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let head = data.get(at..at + 8)?;
        let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = [head[4], head[5], head[6], head[7]];
        if size < 8 {
            return None;
        }
        let payload = data.get(at + 8..at + size)?;
        at += size;
        Some((kind, payload))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child<'a>(data: &'a [u8], path: &[&[u8; 4]]) -> Option<&'a [u8]> {
        let (first, rest) = path.split_first()?;
        let (_, payload) = boxes(data).find(|(k, _)| k == *first)?;
        if rest.is_empty() {
            Some(payload)
        } else {
            child(payload, rest)
        }
    }

    fn video_track() -> TrackInfo {
        TrackInfo {
            track_id: 1,
            timescale: 90_000,
            codec: TrackCodec::H264 {
                sps: vec![0x67, 0x42, 0xc0, 0x1f, 0xaa],
                pps: vec![0x68, 0xce, 0x3c, 0x80],
                width: 320,
                height: 240,
                chroma: (1, 0, 0),
            },
        }
    }

    #[test]
    fn init_segment_has_the_cmaf_box_tree() {
        let init = init_segment(&video_track());
        let kinds: Vec<[u8; 4]> = boxes(&init).map(|(k, _)| k).collect();
        assert_eq!(kinds, vec![*b"ftyp", *b"moov"]);
        let trex = child(&init, &[b"moov", b"mvex", b"trex"]).expect("trex");
        assert_eq!(&trex[4..8], &1u32.to_be_bytes());
        let stsd = child(
            &init,
            &[b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"],
        )
        .expect("stsd");
        // full box header + entry count, then avc1
        let (kind, avc1) = boxes(&stsd[8..]).next().expect("sample entry");
        assert_eq!(&kind, b"avc1");
        assert_eq!(&avc1[24..28], &[0x01, 0x40, 0x00, 0xf0]); // 320 x 240
        let (kind, avcc) = boxes(&avc1[78..]).next().expect("avcC");
        assert_eq!(&kind, b"avcC");
        assert_eq!(&avcc[..4], &[1, 0x42, 0xc0, 0x1f]);
        assert_eq!(avcc[4], 0xff);
        assert_eq!(avcc[5], 0xe1);
        assert_eq!(&avcc[8..13], &[0x67, 0x42, 0xc0, 0x1f, 0xaa]);
        let mdhd = child(&init, &[b"moov", b"trak", b"mdia", b"mdhd"]).expect("mdhd");
        assert_eq!(&mdhd[12..16], &90_000u32.to_be_bytes());
    }

    #[test]
    fn opus_init_segment_carries_dops() {
        let init = init_segment(&TrackInfo {
            track_id: 2,
            timescale: 48_000,
            codec: TrackCodec::Opus {
                channels: 2,
                pre_skip: 0,
            },
        });
        let stsd = child(
            &init,
            &[b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"],
        )
        .expect("stsd");
        let (kind, entry) = boxes(&stsd[8..]).next().expect("sample entry");
        assert_eq!(&kind, b"Opus");
        let (kind, dops) = boxes(&entry[28..]).next().expect("dOps");
        assert_eq!(&kind, b"dOps");
        assert_eq!(dops, &[0, 2, 0, 0, 0, 0, 0xbb, 0x80, 0, 0, 0]);
        assert!(child(&init, &[b"moov", b"trak", b"mdia", b"minf", b"smhd"]).is_some());
    }

    #[test]
    fn aac_init_segment_carries_esds_with_the_asc() {
        let init = init_segment(&TrackInfo {
            track_id: 1,
            timescale: 48_000,
            codec: TrackCodec::Aac {
                channels: 2,
                sample_rate: 48_000,
                asc: vec![0x11, 0x90],
            },
        });
        let stsd = child(
            &init,
            &[b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"],
        )
        .expect("stsd");
        let (kind, entry) = boxes(&stsd[8..]).next().expect("sample entry");
        assert_eq!(&kind, b"mp4a");
        let (kind, esds) = boxes(&entry[28..]).next().expect("esds");
        assert_eq!(&kind, b"esds");
        assert_eq!(esds.len(), 4 + 2 + 25);
        assert_eq!(&esds[4..6], &[0x03, 25]);
        assert_eq!(&esds[9..12], &[0x04, 17, 0x40]);
        assert_eq!(&esds[24..28], &[0x05, 2, 0x11, 0x90]);
        assert_eq!(&esds[28..31], &[0x06, 1, 0x02]);
    }

    #[test]
    fn fragment_data_offset_points_at_the_samples() {
        let a = [1u8, 2, 3];
        let b = [4u8, 5];
        let frag = fragment(
            7,
            1,
            90_000 * 3600 * 30, // past 32 bits: tfdt version 1
            &[
                Sample {
                    duration: 3000,
                    keyframe: true,
                    data: &a,
                },
                Sample {
                    duration: 3003,
                    keyframe: false,
                    data: &b,
                },
            ],
        );
        let kinds: Vec<[u8; 4]> = boxes(&frag).map(|(k, _)| k).collect();
        assert_eq!(kinds, vec![*b"moof", *b"mdat"]);
        let mfhd = child(&frag, &[b"moof", b"mfhd"]).expect("mfhd");
        assert_eq!(&mfhd[4..8], &7u32.to_be_bytes());
        let tfdt = child(&frag, &[b"moof", b"traf", b"tfdt"]).expect("tfdt");
        assert_eq!(tfdt[0], 1);
        assert_eq!(&tfdt[4..12], &(90_000u64 * 3600 * 30).to_be_bytes());
        let trun = child(&frag, &[b"moof", b"traf", b"trun"]).expect("trun");
        assert_eq!(&trun[4..8], &2u32.to_be_bytes());
        let offset = u32::from_be_bytes([trun[8], trun[9], trun[10], trun[11]]) as usize;
        assert_eq!(&frag[offset..offset + 3], &a);
        assert_eq!(&frag[offset + 3..offset + 5], &b);
        assert_eq!(&trun[12..24], &[0, 0, 0x0b, 0xb8, 0, 0, 0, 3, 2, 0, 0, 0]);
        assert_eq!(&trun[24..36], &[0, 0, 0x0b, 0xbb, 0, 0, 0, 2, 1, 1, 0, 0]);
    }

    #[test]
    fn annex_b_becomes_length_prefixed_without_parameter_sets() {
        let au = [
            0, 0, 0, 1, 0x09, 0xf0, // AUD
            0, 0, 0, 1, 0x67, 0x42, // SPS
            0, 0, 1, 0x68, 0xce, // PPS
            0, 0, 1, 0x65, 0x88, 0x84, // IDR slice
        ];
        let mut out = Vec::new();
        annex_b_to_avcc(&au, true, &mut out);
        assert_eq!(out, vec![0, 0, 0, 3, 0x65, 0x88, 0x84]);
        out.clear();
        annex_b_to_avcc(&au, false, &mut out);
        assert_eq!(
            out,
            vec![0, 0, 0, 2, 0x67, 0x42, 0, 0, 0, 2, 0x68, 0xce, 0, 0, 0, 3, 0x65, 0x88, 0x84]
        );
    }

    #[test]
    fn box_walker_stops_on_truncated_or_bogus_sizes() {
        assert_eq!(boxes(&[0, 0, 0, 4, b'f', b'r', b'e', b'e']).count(), 0);
        assert_eq!(boxes(&[0, 0, 0, 20, b'f', b'r', b'e', b'e']).count(), 0);
        assert_eq!(boxes(&[]).count(), 0);
    }
}
