use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use crate::io::DATAGRAM_MAX_PACKET_SIZE;
use crate::packet::Vp8Patch;
use crate::rtp_::{ExtensionValues, MidRid, Pt, SeqNo, Ssrc};

use super::RtpPacket;
use super::rtx_cache_buf::EvictingBuffer;

const RTX_CACHE_SIZE_QUANTIZER: usize = 25;
const RTX_CACHE_QUANTIZE_SLOTS: usize = DATAGRAM_MAX_PACKET_SIZE / RTX_CACHE_SIZE_QUANTIZER;

#[derive(Debug)]
pub(crate) struct RtxCache {
    // Data, new additions here probably need to be cleared in [`clear`].
    packet_by_seq_no: EvictingBuffer<RtxEntry>,

    // Technically we want [Option<SeqNo>; X] to indicate the absence of
    // a SeqNo. However We can half the storage space by using the sentinel
    // values SeqNo::MAX to indicate None
    seq_no_by_quantized_size: [SeqNo; RTX_CACHE_QUANTIZE_SLOTS],

    /// The packet being resent, rebuilt from its [`RtxEntry`]: one per cache, so the
    /// entries need not each hold a whole [`RtpPacket`]; allocated at the first resend.
    resend: Option<Box<RtpPacket>>,
}

/// What the cache keeps of a sent packet: what a resend reads of it.
///
/// A whole [`RtpPacket`] is ~400 bytes, most of it the header's extension values and
/// CSRC array, which are empty for nearly every packet; its payload is an `Arc` that is
/// often shared between streams (an SFU writing the same payloads to many receivers).
/// The extension values (less the MID/RID str0m stamped on it), CSRCs and VP8 patch are
/// kept only for the packets that have any.
#[derive(Debug)]
struct RtxEntry {
    payload: Arc<[u8]>,
    rare: Option<Box<RtxRare>>,
    /// RTP timestamp.
    time: u32,
    pt: Pt,
    marker: bool,
    /// The packet went out with the stream's MID and RID (before the receiver bound the SSRC).
    with_midrid: bool,
}

#[derive(Debug)]
struct RtxRare {
    ext_vals: ExtensionValues,
    csrc_count: usize,
    csrc: [u32; 15],
    vp8_patch: Option<Vp8Patch>,
}

impl RtxEntry {
    fn new(packet: RtpPacket, midrid: MidRid) -> Self {
        let RtpPacket {
            header,
            payload,
            vp8_patch,
            ..
        } = packet;
        let mut ext_vals = header.ext_vals;
        let with_midrid = ext_vals.mid == Some(midrid.mid()) && ext_vals.rid == midrid.rid();
        if with_midrid {
            ext_vals.mid = None;
            ext_vals.rid = None;
        }
        let rare = (ext_vals != ExtensionValues::default()
            || header.csrc_count > 0
            || vp8_patch.is_some())
        .then(|| {
            Box::new(RtxRare {
                ext_vals,
                csrc_count: header.csrc_count,
                csrc: header.csrc,
                vp8_patch,
            })
        });
        RtxEntry {
            payload,
            rare,
            time: header.timestamp,
            pt: header.payload_type,
            marker: header.marker,
            with_midrid,
        }
    }

    /// Rebuilds the packet as it was cached into `into`. Its `time` and `timestamp` are
    /// left as they were: a resend reads neither.
    fn restore(&self, seq_no: SeqNo, ssrc: Ssrc, midrid: MidRid, into: &mut RtpPacket) {
        into.seq_no = seq_no;
        into.payload = self.payload.clone();
        into.nackable = true;
        into.last_sender_info = None;

        let header = &mut into.header;
        *header = Default::default();
        header.sequence_number = *seq_no as u16;
        header.marker = self.marker;
        header.payload_type = self.pt;
        header.timestamp = self.time;
        header.ssrc = ssrc;
        into.vp8_patch = None;
        if let Some(rare) = &self.rare {
            header.ext_vals = rare.ext_vals.clone();
            header.csrc_count = rare.csrc_count;
            header.csrc = rare.csrc;
            into.vp8_patch = rare.vp8_patch;
        }
        if self.with_midrid {
            header.ext_vals.mid = Some(midrid.mid());
            header.ext_vals.rid = midrid.rid();
        }
    }
}

impl RtxCache {
    pub fn new(max_packet_count: usize, max_packet_age: Duration) -> Self {
        Self {
            packet_by_seq_no: EvictingBuffer::new(10, max_packet_age, max_packet_count),
            seq_no_by_quantized_size: [SeqNo::MAX; RTX_CACHE_QUANTIZE_SLOTS],
            resend: None,
        }
    }

    /// Keeps a sent packet for resends. `midrid` is the sending stream's.
    pub fn cache_sent_packet(&mut self, packet: RtpPacket, midrid: MidRid, now: Instant) {
        assert!(packet.nackable);
        // Evict first, so a slot that is old enough to go is reused rather than the
        // buffer growing around it.
        self.remove_old_packets(now);
        let seq_no = packet.seq_no;
        let quantized_size = packet.payload.len() / RTX_CACHE_SIZE_QUANTIZER;
        self.packet_by_seq_no
            .push(*seq_no, now, RtxEntry::new(packet, midrid));
        self.seq_no_by_quantized_size[quantized_size] = seq_no;
    }

    pub fn last_cached_seq_no(&self) -> Option<SeqNo> {
        Some(self.packet_by_seq_no.last_position()?.into())
    }

    /// Payload size of a cached packet, `None` if it is not (or no longer) cached.
    pub fn payload_len(&self, seq_no: SeqNo) -> Option<usize> {
        Some(self.packet_by_seq_no.get(*seq_no)?.payload.len())
    }

    /// The cached packet, rebuilt for a resend on the stream with `ssrc` and `midrid`
    /// (the ones it was cached for).
    pub fn get_cached_packet_by_seq_no(
        &mut self,
        seq_no: SeqNo,
        ssrc: Ssrc,
        midrid: MidRid,
    ) -> Option<&mut RtpPacket> {
        let entry = self.packet_by_seq_no.get(*seq_no)?;
        let resend = self
            .resend
            .get_or_insert_with(|| Box::new(RtpPacket::blank()));
        entry.restore(seq_no, ssrc, midrid, resend);
        Some(resend)
    }

    pub fn get_cached_packet_smaller_than(
        &mut self,
        max_size: usize,
        ssrc: Ssrc,
        midrid: MidRid,
    ) -> Option<&mut RtpPacket> {
        let quantized_size = max_size / RTX_CACHE_SIZE_QUANTIZER;

        let seq_no = self.seq_no_by_quantized_size[..quantized_size]
            .iter()
            .rev()
            .filter(|seq_no| !seq_no.is_max())
            .find(|seq_no| self.packet_by_seq_no.contains(***seq_no))?;

        self.get_cached_packet_by_seq_no(*seq_no, ssrc, midrid)
    }

    fn remove_old_packets(&mut self, now: Instant) {
        self.packet_by_seq_no.maybe_evict(now);
    }

    pub(crate) fn last_packet(&self) -> Option<&[u8]> {
        let packet = self.packet_by_seq_no.last()?;
        Some(packet.payload.as_ref())
    }

    pub(crate) fn clear(&mut self) {
        self.packet_by_seq_no.clear();
        self.seq_no_by_quantized_size = [SeqNo::MAX; RTX_CACHE_QUANTIZE_SLOTS];
        self.resend = None;
    }
}

#[cfg(test)]
mod test {
    use crate::packet::Vp8Descriptor;
    use crate::rtp_::MediaTime;
    use crate::rtp_::RtpHeader;
    use crate::rtp_::{AbsCaptureTime, VideoOrientation};

    use super::*;

    fn after(now: Instant, millis: u64) -> Instant {
        now + Duration::from_millis(millis)
    }

    fn ssrc() -> Ssrc {
        7.into()
    }

    fn midrid() -> MidRid {
        MidRid("v".into(), None)
    }

    /// What a resend reads of a cached packet.
    fn got(packet: Option<&mut RtpPacket>) -> Option<(SeqNo, u16, Vec<u8>)> {
        let p = packet?;
        Some((p.seq_no, p.header.sequence_number, p.payload.to_vec()))
    }

    fn by_seq(cache: &mut RtxCache, seq_no: u64) -> Option<(SeqNo, u16, Vec<u8>)> {
        got(cache.get_cached_packet_by_seq_no(seq_no.into(), ssrc(), midrid()))
    }

    fn smaller(cache: &mut RtxCache, max_size: usize) -> Option<(SeqNo, u16, Vec<u8>)> {
        got(cache.get_cached_packet_smaller_than(max_size, ssrc(), midrid()))
    }

    fn sent(seq_no: u64, millis: u64) -> (SeqNo, u16, Vec<u8>) {
        (seq_no.into(), seq_no as u16, millis.to_be_bytes().to_vec())
    }

    fn packet(now: Instant, seq_no: u64, millis: u64) -> RtpPacket {
        RtpPacket {
            header: RtpHeader {
                sequence_number: seq_no as u16,
                ..Default::default()
            },
            seq_no: seq_no.into(),
            time: MediaTime::from_90khz(0),
            payload: millis.to_be_bytes().into(),
            vp8_patch: None,
            timestamp: after(now, millis),
            last_sender_info: None,
            nackable: true,
        }
    }

    #[test]
    fn rtx_cache_0_sized() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(0, Duration::from_secs(3));
        rtx_cache.cache_sent_packet(packet(now, 1, 10), midrid(), after(now, 10));
        assert_eq!(Some(sent(1, 10)), by_seq(&mut rtx_cache, 1));
        assert_eq!(Some(sent(1, 10)), smaller(&mut rtx_cache, 1000));
    }

    #[test]
    fn rtx_cache_0_duration() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(10, Duration::from_secs(0));
        rtx_cache.cache_sent_packet(packet(now, 1, 10), midrid(), after(now, 10));
        assert_eq!(None, by_seq(&mut rtx_cache, 1));
        assert_eq!(None, smaller(&mut rtx_cache, 1000));
    }

    #[test]
    fn rtx_cache_1_sized() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(1, Duration::from_secs(3));
        rtx_cache.cache_sent_packet(packet(now, 1, 10), midrid(), after(now, 10));
        assert_eq!(Some(sent(1, 10)), by_seq(&mut rtx_cache, 1));
        assert_eq!(Some(sent(1, 10)), smaller(&mut rtx_cache, 1000));
        assert_eq!(Some(sent(1, 10)), smaller(&mut rtx_cache, 25));
        assert_eq!(None, smaller(&mut rtx_cache, 24));
        rtx_cache.cache_sent_packet(packet(now, 2, 20), midrid(), after(now, 20));
        assert_eq!(Some(sent(2, 20)), by_seq(&mut rtx_cache, 2));
    }

    #[test]
    fn rtx_cache_100_sized_backwards() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(100, Duration::from_secs(3));

        for i in 1..=200 {
            let seq_no = 201 - i;
            let pkt = packet(now, seq_no, (201 - i) * 10);
            let now = after(now, i * 10);
            rtx_cache.cache_sent_packet(pkt, midrid(), now);
        }

        assert_eq!(Some(sent(200, 2000)), by_seq(&mut rtx_cache, 200));
        assert_eq!(None, by_seq(&mut rtx_cache, 100));
        assert_eq!(None, by_seq(&mut rtx_cache, 101));
    }

    #[test]
    fn rtx_cache_eviction() {
        let now = Instant::now();
        // Cache can take all entries
        let mut rtx_cache = RtxCache::new(400, Duration::from_secs(1));
        for i in 1..=200 {
            let seq_no = i;
            let pkt = packet(now, seq_no, i * 10);
            let now = after(now, i * 10);
            rtx_cache.cache_sent_packet(pkt, midrid(), now);
        }

        assert_eq!(None, by_seq(&mut rtx_cache, 99));

        assert_eq!(Some(sent(100, 1000)), by_seq(&mut rtx_cache, 100));
        assert_eq!(Some(sent(200, 2000)), by_seq(&mut rtx_cache, 200));
    }

    #[test]
    fn rtx_entry_is_small() {
        // Per cached packet: the ring slot (position, cache time) and the entry.
        assert!(std::mem::size_of::<RtxEntry>() <= 32);
        assert!(EvictingBuffer::<RtxEntry>::slot_size() <= 56);
        // What a slot cost when it held the whole packet.
        assert!(EvictingBuffer::<RtpPacket>::slot_size() >= 300);
    }

    #[test]
    fn plain_packets_keep_no_rare_fields() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(10, Duration::from_secs(3));
        let mut pkt = packet(now, 1, 10);
        // Stamped by poll_packet before the receiver bound the SSRC.
        pkt.header.ext_vals.mid = Some(midrid().mid());
        rtx_cache.cache_sent_packet(pkt, midrid(), now);
        let entry = rtx_cache.packet_by_seq_no.get(1).expect("cached");
        assert!(entry.rare.is_none());
        assert!(entry.with_midrid);
    }

    #[test]
    fn resend_rebuilds_the_cached_packet() {
        let now = Instant::now();
        let midrid = MidRid("v".into(), Some("h".into()));
        let payload: Arc<[u8]> = vec![0x90, 0x80, 0x92, 0x34, 0xAB].into();

        let mut header = RtpHeader {
            sequence_number: 70_000u64 as u16,
            marker: true,
            payload_type: 96.into(),
            timestamp: 0xDEAD_BEEF,
            ssrc: ssrc(),
            ..Default::default()
        };
        header.csrc_count = 2;
        header.csrc[..2].copy_from_slice(&[11, 12]);
        header.ext_vals.audio_level = Some(-30);
        header.ext_vals.video_orientation = Some(VideoOrientation::Deg90);
        header.ext_vals.abs_capture_time = Some(AbsCaptureTime {
            capture_time: std::time::SystemTime::UNIX_EPOCH,
            clock_offset: Some(-1),
        });
        header.ext_vals.mid = Some(midrid.mid());
        header.ext_vals.rid = midrid.rid();
        let vp8_patch = Vp8Descriptor::parse(&payload)
            .expect("VP8 descriptor")
            .patch()
            .picture_id(0x1234)
            .build()
            .expect("patch");

        let original = RtpPacket {
            header: header.clone(),
            seq_no: 70_000.into(),
            time: MediaTime::from_90khz(0xDEAD_BEEF),
            payload: payload.clone(),
            vp8_patch: Some(vp8_patch),
            timestamp: now,
            last_sender_info: None,
            nackable: true,
        };
        let mut rtx_cache = RtxCache::new(10, Duration::from_secs(3));
        rtx_cache.cache_sent_packet(original, midrid, now);

        let resent = rtx_cache
            .get_cached_packet_by_seq_no(70_000.into(), ssrc(), midrid)
            .expect("cached");
        assert_eq!(resent.header, header);
        assert_eq!(resent.seq_no, 70_000.into());
        assert!(
            Arc::ptr_eq(&resent.payload, &payload),
            "payload shared, not copied"
        );
        assert_eq!(resent.vp8_patch, Some(vp8_patch));
        assert!(resent.nackable);

        // A plain packet after it gets none of its header values.
        rtx_cache.cache_sent_packet(packet(now, 70_001, 1), midrid, now);
        let resent = rtx_cache
            .get_cached_packet_by_seq_no(70_001.into(), ssrc(), midrid)
            .expect("cached");
        assert_eq!(
            resent.header,
            RtpHeader {
                sequence_number: 70_001u64 as u16,
                ssrc: ssrc(),
                ..Default::default()
            }
        );
        assert_eq!(resent.vp8_patch, None);
    }

    #[test]
    fn buffer_grows_only_to_the_packets_within_max_age() {
        // A packet every 10 ms kept for 90 ms: nine older packets are live when
        // the tenth is cached, so the initial ten slots suffice.
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(1000, Duration::from_millis(90));
        for i in 0..1000 {
            rtx_cache.cache_sent_packet(packet(now, i, i * 10), midrid(), after(now, i * 10));
        }
        assert_eq!(rtx_cache.packet_by_seq_no.slots(), 10);
        let answered = (900..1000)
            .filter(|i| rtx_cache.payload_len((*i).into()).is_some())
            .count();
        assert_eq!(answered, 10, "the packets of the last 90 ms");
    }

    #[test]
    fn buffer_shrinks_after_a_join_burst() {
        // A joining receiver is sent a GOP at once (300 packets in 60 ms), then
        // a packet every 10 ms; packets are kept for 600 ms.
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(768, Duration::from_millis(600));
        for i in 0..300 {
            rtx_cache.cache_sent_packet(packet(now, i, i / 5), midrid(), after(now, i / 5));
        }
        assert!(rtx_cache.packet_by_seq_no.slots() >= 300);
        for i in 1..=200 {
            let seq_no = 299 + i;
            let at = 60 + i * 10;
            rtx_cache.cache_sent_packet(packet(now, seq_no, at), midrid(), after(now, at));
        }
        // The last 600 ms (61 packets) are all still answered, in fewer slots.
        for seq_no in 439..=499 {
            assert!(rtx_cache.payload_len(seq_no.into()).is_some(), "{seq_no}");
        }
        let slots = rtx_cache.packet_by_seq_no.slots();
        assert!((61..=122).contains(&slots), "{slots} slots");
    }
}
