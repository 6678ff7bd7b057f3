//! MPEG-TS as SRT encoders send it: `mpeg2ts-reader` finds the programs
//! (PAT/PMT) and reassembles PES packets; this module keeps the first
//! H.264 and the first ADTS (AAC) elementary stream and hands out whole
//! PES payloads with their 90 kHz timestamps. Other streams are ignored.

use mpeg2ts_reader::demultiplex::{
    self, DemuxContext, FilterChangeset, FilterRequest, NullPacketFilter, PatPacketFilter,
    PmtPacketFilter,
};
use mpeg2ts_reader::{packet_filter_switch, pes, psi, StreamType};

/// One elementary stream's access unit(s), as one PES packet carried them.
#[derive(Debug, PartialEq, Eq)]
pub struct Pes {
    pub kind: PesKind,
    /// Presentation time, 90 kHz (33 bits, as sent).
    pub pts: u64,
    /// Decode time, 90 kHz (the PTS when absent).
    pub dts: u64,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PesKind {
    /// H.264 in Annex B.
    H264,
    /// AAC frames with ADTS headers.
    Adts,
    /// A stream type relaycast does not take (HEVC, MP3, …): its type byte.
    Other(u8),
}

packet_filter_switch! {
    Filters<Ctx> {
        Pes: pes::PesPacketFilter<Ctx, Collect>,
        Pat: PatPacketFilter<Ctx>,
        Pmt: PmtPacketFilter<Ctx>,
        Null: NullPacketFilter<Ctx>,
    }
}

/// The demultiplexer's context: where finished PES packets land.
pub struct Ctx {
    changeset: FilterChangeset<Filters>,
    out: Vec<Pes>,
    video: bool,
    audio: bool,
    others: Vec<u8>,
}

impl DemuxContext for Ctx {
    type F = Filters;

    fn filter_changeset(&mut self) -> &mut FilterChangeset<Filters> {
        &mut self.changeset
    }

    fn construct(&mut self, req: FilterRequest<'_, '_>) -> Filters {
        match req {
            FilterRequest::ByPid(psi::pat::PAT_PID) => Filters::Pat(PatPacketFilter::default()),
            FilterRequest::ByPid(_) => Filters::Null(NullPacketFilter::default()),
            FilterRequest::ByStream {
                stream_type: StreamType::H264,
                ..
            } if !self.video => {
                self.video = true;
                Filters::Pes(pes::PesPacketFilter::new(Collect::new(PesKind::H264)))
            }
            FilterRequest::ByStream {
                stream_type: StreamType::ADTS,
                ..
            } if !self.audio => {
                self.audio = true;
                Filters::Pes(pes::PesPacketFilter::new(Collect::new(PesKind::Adts)))
            }
            FilterRequest::ByStream { stream_type, .. } => {
                let StreamType(t) = stream_type;
                if !self.others.contains(&t) {
                    self.others.push(t);
                    self.out.push(Pes {
                        kind: PesKind::Other(t),
                        pts: 0,
                        dts: 0,
                        data: Vec::new(),
                    });
                }
                Filters::Null(NullPacketFilter::default())
            }
            FilterRequest::Pmt {
                pid,
                program_number,
            } => Filters::Pmt(PmtPacketFilter::new(pid, program_number)),
            FilterRequest::Nit { .. } => Filters::Null(NullPacketFilter::default()),
        }
    }
}

/// Reassembles one elementary stream's PES packets.
pub struct Collect {
    kind: PesKind,
    current: Option<Pes>,
}

impl Collect {
    fn new(kind: PesKind) -> Collect {
        Collect {
            kind,
            current: None,
        }
    }
}

impl pes::ElementaryStreamConsumer<Ctx> for Collect {
    fn start_stream(&mut self, _ctx: &mut Ctx) {}

    fn begin_packet(&mut self, ctx: &mut Ctx, header: pes::PesHeader) {
        if let Some(done) = self.current.take() {
            ctx.out.push(done);
        }
        let pes::PesContents::Parsed(Some(parsed)) = header.contents() else {
            return;
        };
        let (pts, dts) = match parsed.pts_dts() {
            Ok(pes::PtsDts::PtsOnly(Ok(pts))) => (pts.value(), pts.value()),
            Ok(pes::PtsDts::Both {
                pts: Ok(pts),
                dts: Ok(dts),
            }) => (pts.value(), dts.value()),
            // No usable time: the packet cannot be placed; skipped.
            _ => return,
        };
        self.current = Some(Pes {
            kind: self.kind,
            pts,
            dts,
            data: parsed.payload().to_vec(),
        });
    }

    fn continue_packet(&mut self, _ctx: &mut Ctx, data: &[u8]) {
        if let Some(p) = self.current.as_mut() {
            p.data.extend_from_slice(data);
        }
    }

    fn end_packet(&mut self, ctx: &mut Ctx) {
        if let Some(done) = self.current.take() {
            ctx.out.push(done);
        }
    }

    fn continuity_error(&mut self, _ctx: &mut Ctx) {
        // A lost TS packet: the PES being assembled is broken.
        self.current = None;
    }
}

/// A transport stream demultiplexer, bytes in, PES packets out.
pub struct TsDemux {
    ctx: Ctx,
    demux: demultiplex::Demultiplex<Ctx>,
}

impl Default for TsDemux {
    fn default() -> TsDemux {
        let mut ctx = Ctx {
            changeset: FilterChangeset::default(),
            out: Vec::new(),
            video: false,
            audio: false,
            others: Vec::new(),
        };
        let demux = demultiplex::Demultiplex::new(&mut ctx);
        TsDemux { ctx, demux }
    }
}

impl TsDemux {
    /// Feeds TS bytes (whole 188-byte packets, as SRT carries them) and
    /// appends the PES packets that became complete to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Pes>) {
        self.demux.push(&mut self.ctx, bytes);
        out.append(&mut self.ctx.out);
    }
}

/// One AAC frame from an ADTS stream.
#[derive(Debug, PartialEq, Eq)]
pub struct AdtsFrame<'a> {
    /// AudioSpecificConfig built from the header (object type, rate, channels).
    pub asc: [u8; 2],
    /// Sample rate, Hz.
    pub rate: u32,
    pub raw: &'a [u8],
}

const ADTS_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// Splits ADTS data into frames; stops at the first byte that is not a
/// whole ADTS frame (the rest is returned as an error count of bytes).
pub fn adts_frames(mut data: &[u8]) -> Result<Vec<AdtsFrame<'_>>, usize> {
    let mut frames = Vec::new();
    while !data.is_empty() {
        let Some(h) = data.get(..7) else {
            return Err(data.len());
        };
        if h[0] != 0xff || h[1] & 0xf0 != 0xf0 {
            return Err(data.len());
        }
        let protection_absent = h[1] & 1 == 1;
        let object_type = (h[2] >> 6) + 1;
        let rate_index = (h[2] >> 2) & 0x0f;
        let channels = ((h[2] & 1) << 2) | (h[3] >> 6);
        let len =
            (usize::from(h[3] & 0x03) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        let header = if protection_absent { 7 } else { 9 };
        let Some(rate) = ADTS_RATES.get(usize::from(rate_index)).copied() else {
            return Err(data.len());
        };
        if len < header || data.len() < len {
            return Err(data.len());
        }
        let asc = (u16::from(object_type) << 11)
            | (u16::from(rate_index) << 7)
            | (u16::from(channels) << 3);
        frames.push(AdtsFrame {
            asc: asc.to_be_bytes(),
            rate,
            raw: &data[header..len],
        });
        data = &data[len..];
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adts_frames_split_and_give_their_config() {
        // AAC-LC (profile 1), 44.1 kHz (index 4), stereo, frame of 7 + 3 bytes.
        let one = [0xff, 0xf1, 0x50, 0x80, 0x01, 0x40, 0xfc, 1, 2, 3];
        let two: Vec<u8> = one.iter().chain(one.iter()).copied().collect();
        let frames = adts_frames(&two).expect("frames");
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].asc, [0x12, 0x10]);
        assert_eq!(frames[0].rate, 44_100);
        assert_eq!(frames[0].raw, &[1, 2, 3]);
        assert!(adts_frames(&two[..12]).is_err());
        assert!(adts_frames(&[0x12, 0x34]).is_err());
    }

    #[test]
    fn garbage_gives_no_pes_and_no_panic() {
        let mut d = TsDemux::default();
        let mut out = Vec::new();
        d.push(&[0x47; 1316], &mut out);
        d.push(&[0x00; 1000], &mut out);
        let junk: Vec<u8> = (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect();
        d.push(&junk, &mut out);
        assert!(out.iter().all(|p| p.data.len() < 4000));
    }
}
