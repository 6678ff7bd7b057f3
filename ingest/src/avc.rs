//! H.264 from FLV/MP4 form (AVCC: length-prefixed NAL units, parameter
//! sets in a separate configuration record) to the Annex B access units the
//! SFU forwards, with SPS and PPS in front of every IDR: a WebRTC viewer
//! that joins on any keyframe, and the LL-HLS packager, find them there.

use h264_reader::avcc::AvcDecoderConfigurationRecord;

const START_CODE: [u8; 4] = [0, 0, 0, 1];
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AvcError {
    #[error("AVC configuration record: {0}")]
    Config(String),
    #[error("an AVC frame before its configuration record")]
    NotConfigured,
    #[error("NAL unit length {len} runs past the frame's {left} bytes")]
    BadLength { len: usize, left: usize },
}

/// Converts one publisher's AVCC frames to Annex B.
#[derive(Debug, Default)]
pub struct AvccToAnnexB {
    /// Bytes of each NAL unit's length prefix (1, 2 or 4).
    length_size: usize,
    /// Parameter sets in Annex B, ready to prepend to an IDR.
    params: Vec<u8>,
}

impl AvccToAnnexB {
    /// Takes a configuration record (sent before the first frame, and again
    /// when the encoder changes its parameters).
    pub fn configure(&mut self, record: &[u8]) -> Result<(), AvcError> {
        let rec = AvcDecoderConfigurationRecord::try_from(record)
            .map_err(|e| AvcError::Config(format!("{e:?}")))?;
        let mut params = Vec::new();
        for sps in rec.sequence_parameter_sets() {
            let sps = sps.map_err(|e| AvcError::Config(format!("{e:?}")))?;
            params.extend_from_slice(&START_CODE);
            params.extend_from_slice(sps);
        }
        for pps in rec.picture_parameter_sets() {
            let pps = pps.map_err(|e| AvcError::Config(format!("{e:?}")))?;
            params.extend_from_slice(&START_CODE);
            params.extend_from_slice(pps);
        }
        self.length_size = usize::from(rec.length_size_minus_one()) + 1;
        self.params = params;
        Ok(())
    }

    /// One access unit in Annex B; parameter sets are put before an IDR
    /// that does not carry its own (and in-band ones are kept for the next
    /// IDR). Returns the access unit and whether it holds an IDR.
    pub fn convert(&mut self, frame: &[u8]) -> Result<(Vec<u8>, bool), AvcError> {
        if self.length_size == 0 {
            return Err(AvcError::NotConfigured);
        }
        let mut nalus = Vec::new();
        let mut rest = frame;
        while !rest.is_empty() {
            let Some(prefix) = rest.get(..self.length_size) else {
                return Err(AvcError::BadLength {
                    len: self.length_size,
                    left: rest.len(),
                });
            };
            let len = prefix
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            rest = &rest[self.length_size..];
            let Some(nalu) = rest.get(..len) else {
                return Err(AvcError::BadLength {
                    len,
                    left: rest.len(),
                });
            };
            rest = &rest[len..];
            if !nalu.is_empty() {
                nalus.push(nalu);
            }
        }
        let kind = |n: &[u8]| n.first().map_or(0, |b| b & 0x1f);
        let idr = nalus.iter().any(|n| kind(n) == NAL_IDR);
        let in_band = nalus.iter().any(|n| kind(n) == NAL_SPS);
        if in_band {
            let mut params = Vec::new();
            for n in nalus
                .iter()
                .filter(|n| matches!(kind(n), NAL_SPS | NAL_PPS))
            {
                params.extend_from_slice(&START_CODE);
                params.extend_from_slice(n);
            }
            self.params = params;
        }
        let mut out = Vec::with_capacity(frame.len() + self.params.len() + 16);
        if idr && !in_band {
            out.extend_from_slice(&self.params);
        }
        for n in nalus {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(n);
        }
        Ok((out, idr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// avcC with one SPS (67 42 00 1f) and one PPS (68 ce 3c 80), 4-byte lengths.
    fn record() -> Vec<u8> {
        vec![
            1, 0x42, 0x00, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x42, 0x00, 0x1f, 1, 0, 4, 0x68, 0xce,
            0x3c, 0x80,
        ]
    }

    #[test]
    fn idr_gets_parameter_sets_and_delta_frames_do_not() {
        let mut c = AvccToAnnexB::default();
        assert_eq!(c.convert(&[0, 0, 0, 1, 0x65]), Err(AvcError::NotConfigured));
        c.configure(&record()).expect("record");
        let (au, idr) = c.convert(&[0, 0, 0, 2, 0x65, 0xaa]).expect("idr");
        assert!(idr);
        assert_eq!(
            au,
            [
                0, 0, 0, 1, 0x67, 0x42, 0x00, 0x1f, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80, 0, 0, 0, 1,
                0x65, 0xaa
            ]
        );
        let (au, idr) = c.convert(&[0, 0, 0, 2, 0x41, 0xbb]).expect("delta");
        assert!(!idr);
        assert_eq!(au, [0, 0, 0, 1, 0x41, 0xbb]);
    }

    #[test]
    fn in_band_parameter_sets_are_not_doubled_and_are_remembered() {
        let mut c = AvccToAnnexB::default();
        c.configure(&record()).expect("record");
        let frame = [
            0, 0, 0, 2, 0x67, 0x64, 0, 0, 0, 2, 0x68, 0x01, 0, 0, 0, 1, 0x65,
        ];
        let (au, _) = c.convert(&frame).expect("idr");
        assert_eq!(au.iter().filter(|b| **b == 0x67).count(), 1);
        let (au, _) = c.convert(&[0, 0, 0, 1, 0x65]).expect("idr");
        assert_eq!(&au[..6], &[0, 0, 0, 1, 0x67, 0x64]);
    }

    #[test]
    fn annex_b_idr_without_parameter_sets_gets_the_last_in_band_ones() {
        let mut p = AnnexBParams::default();
        let first = vec![
            0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1, 0x65, 0x88,
        ];
        let (au, idr) = p.fix(first.clone());
        assert!(idr);
        assert_eq!(au, first);
        let (au, idr) = p.fix(vec![0, 0, 0, 1, 0x65, 0x99]);
        assert!(idr);
        assert_eq!(
            au,
            [0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1, 0x65, 0x99]
        );
        let (au, idr) = p.fix(vec![0, 0, 1, 0x41, 0x9a]);
        assert!(!idr);
        assert_eq!(au, [0, 0, 1, 0x41, 0x9a]);
    }

    #[test]
    fn lengths_past_the_end_are_errors() {
        let mut c = AvccToAnnexB::default();
        c.configure(&record()).expect("record");
        assert!(matches!(
            c.convert(&[0, 0, 0, 9, 0x65]),
            Err(AvcError::BadLength { .. })
        ));
        assert!(matches!(
            c.convert(&[0, 0]),
            Err(AvcError::BadLength { .. })
        ));
        assert!(c.configure(&[1, 2]).is_err());
    }
}

/// Annex B H.264 as MPEG-TS carries it: keeps the last in-band SPS/PPS and
/// puts them before an IDR that comes without them.
#[derive(Debug, Default)]
pub struct AnnexBParams {
    params: Vec<u8>,
}

impl AnnexBParams {
    /// The access unit, parameter sets added where needed, and whether it
    /// holds an IDR.
    pub fn fix(&mut self, au: Vec<u8>) -> (Vec<u8>, bool) {
        let kind = |n: &[u8]| n.first().map_or(0, |b| b & 0x1f);
        let mut idr = false;
        let mut in_band = Vec::new();
        for n in sfu::h264::nal_units(&au) {
            match kind(n) {
                NAL_IDR => idr = true,
                NAL_SPS | NAL_PPS => {
                    in_band.extend_from_slice(&START_CODE);
                    in_band.extend_from_slice(n);
                }
                _ => {}
            }
        }
        if !in_band.is_empty() {
            self.params = in_band;
            return (au, idr);
        }
        if idr && !self.params.is_empty() {
            let mut out = Vec::with_capacity(self.params.len() + au.len());
            out.extend_from_slice(&self.params);
            out.extend_from_slice(&au);
            return (out, idr);
        }
        (au, idr)
    }
}
