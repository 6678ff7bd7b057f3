//! Opus → AAC-LC for the audio rendition: Apple's HLS players (iOS
//! `<video>`, AVPlayer) take AAC, not Opus. Decoding with libopus (`opus`
//! crate), encoding with Fraunhofer FDK AAC (`fdk-aac` crate, bundled
//! source), 48 kHz stereo, one AAC frame = 1024 samples.
//!
//! Timing: AAC frame k starts at the first Opus sample's decode time +
//! k × 1024 (the encoder's own delay, `nDelay`, is taken off the start so
//! audio stays in sync with video). Holes in the Opus timeline (lost
//! packets) are filled with silence so the AAC timeline stays continuous.

use bytes::Bytes;

use crate::track::TrackSample;

/// Samples per channel in one AAC-LC frame.
pub const AAC_FRAME: u32 = 1024;
const CHANNELS: usize = 2;
/// Longest Opus packet: 120 ms at 48 kHz.
const MAX_OPUS_SAMPLES: usize = 5760;
/// Longest hole filled with silence; longer ones are closed up.
const MAX_FILL: u64 = 48_000;

/// Why the AAC path could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AacError {
    #[error("Opus decoder: {0}")]
    Opus(#[from] opus::Error),
    #[error("AAC encoder: {0:?}")]
    Fdk(fdk_aac::enc::EncoderError),
}

/// Opus packets in, AAC-LC frames out.
pub struct OpusToAac {
    decoder: opus::Decoder,
    encoder: fdk_aac::enc::Encoder,
    asc: Vec<u8>,
    delay: u64,
    pcm: Vec<i16>,
    decoded: Vec<i16>,
    out: Vec<u8>,
    /// Decode time (48 kHz) of the next AAC frame.
    next_dts: Option<u64>,
    /// Where the next Opus packet should start if none was lost.
    expected: Option<u64>,
}

impl std::fmt::Debug for OpusToAac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusToAac")
            .field("next_dts", &self.next_dts)
            .finish_non_exhaustive()
    }
}

impl OpusToAac {
    pub fn new(bitrate: u32) -> Result<OpusToAac, AacError> {
        use fdk_aac::enc::{
            AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport,
        };
        let decoder = opus::Decoder::new(48_000, opus::Channels::Stereo)?;
        let encoder = Encoder::new(EncoderParams {
            bit_rate: BitRate::Cbr(bitrate),
            sample_rate: 48_000,
            transport: Transport::Raw,
            channels: ChannelMode::Stereo,
            audio_object_type: AudioObjectType::Mpeg4LowComplexity,
        })
        .map_err(AacError::Fdk)?;
        let info = encoder.info().map_err(AacError::Fdk)?;
        let asc_len = (info.confSize as usize).min(info.confBuf.len());
        let asc = info.confBuf[..asc_len].to_vec();
        Ok(OpusToAac {
            decoder,
            encoder,
            asc,
            delay: u64::from(info.nDelay),
            pcm: Vec::with_capacity(8192),
            decoded: vec![0; MAX_OPUS_SAMPLES * CHANNELS],
            out: vec![0; 8192],
            next_dts: None,
            expected: None,
        })
    }

    /// The AudioSpecificConfig for the `esds` of the init segment.
    pub fn audio_specific_config(&self) -> &[u8] {
        &self.asc
    }

    /// Decodes one Opus sample and appends the AAC frames it completes.
    pub fn push(&mut self, opus: &TrackSample, out: &mut Vec<TrackSample>) {
        if let Some(expected) = self.expected {
            if opus.dts > expected {
                let hole = (opus.dts - expected).min(MAX_FILL) as usize;
                self.pcm.resize(self.pcm.len() + hole * CHANNELS, 0);
            }
        }
        let start = opus.dts.saturating_sub(self.delay);
        self.next_dts.get_or_insert(start);
        let samples = match self.decoder.decode(&opus.data, &mut self.decoded, false) {
            Ok(n) => n,
            Err(e) => {
                // A broken packet: its duration in silence keeps the clock.
                tracing::debug!("Opus packet not decodable: {e}");
                opus.duration as usize
            }
        };
        let samples = samples.min(MAX_OPUS_SAMPLES);
        if samples > 0 && self.decoded.len() >= samples * CHANNELS {
            self.pcm
                .extend_from_slice(&self.decoded[..samples * CHANNELS]);
        }
        self.expected = Some(opus.dts + samples as u64);
        let frame = AAC_FRAME as usize * CHANNELS;
        while self.pcm.len() >= frame {
            let info = match self.encoder.encode(&self.pcm[..frame], &mut self.out) {
                Ok(info) => info,
                Err(e) => {
                    tracing::warn!("AAC encoder: {e:?}");
                    self.pcm.drain(..frame);
                    continue;
                }
            };
            let consumed = info.input_consumed.clamp(1, frame);
            self.pcm.drain(..consumed);
            if info.output_size > 0 {
                let dts = self.next_dts.unwrap_or(0);
                self.next_dts = Some(dts + u64::from(AAC_FRAME));
                out.push(TrackSample {
                    dts,
                    duration: AAC_FRAME,
                    keyframe: true,
                    data: Bytes::copy_from_slice(&self.out[..info.output_size.min(self.out.len())]),
                    wallclock: opus.wallclock,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn opus_silence_becomes_continuous_aac_frames() {
        let mut t = OpusToAac::new(128_000).expect("codecs");
        // AAC-LC (2), 48 kHz (index 3), 2 channels.
        assert_eq!(t.audio_specific_config(), &[0x11, 0x90]);
        let mut out = Vec::new();
        for i in 0..200u64 {
            let dts = 100_000 + i * 960;
            // Packets 50..55 lost: filled with silence.
            if (50..55).contains(&i) {
                continue;
            }
            t.push(
                &TrackSample {
                    dts,
                    duration: 960,
                    keyframe: true,
                    data: Bytes::from_static(&[0xf8, 0xff, 0xfe]),
                    wallclock: SystemTime::UNIX_EPOCH,
                },
                &mut out,
            );
        }
        // 4 s of input, less the encoder's look-ahead.
        assert!(out.len() > 170 && out.len() <= 188, "{} frames", out.len());
        for w in out.windows(2) {
            assert_eq!(w[1].dts, w[0].dts + 1024);
        }
        assert!(out.iter().all(|f| !f.data.is_empty()));
    }

    /// A 440 Hz tone survives Opus (libopus encode, then this decoder) and AAC (FDK encode
    /// and decode): the bundled libopus really codes audio, not just silence.
    #[test]
    fn an_opus_tone_comes_out_of_aac_at_its_pitch_and_level() {
        const RATE: usize = 48_000;
        const FRAME: usize = 960;
        let mut opus_enc =
            opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Audio)
                .expect("Opus encoder");
        let mut t = OpusToAac::new(128_000).expect("codecs");
        let mut aac = Vec::new();
        let mut pcm = vec![0i16; FRAME * CHANNELS];
        let amplitude = 8000.0;
        for i in 0..150usize {
            for (n, pair) in pcm.chunks_exact_mut(CHANNELS).enumerate() {
                let t = (i * FRAME + n) as f64 / RATE as f64;
                let v = (amplitude * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
                pair.fill(v);
            }
            let packet = opus_enc.encode_vec(&pcm, 4000).expect("Opus encode");
            t.push(
                &TrackSample {
                    dts: (i * FRAME) as u64,
                    duration: FRAME as u32,
                    keyframe: true,
                    data: Bytes::from(packet),
                    wallclock: SystemTime::UNIX_EPOCH,
                },
                &mut aac,
            );
        }
        assert!(aac.len() > 130, "{} AAC frames", aac.len());

        let mut dec = fdk_aac::dec::Decoder::new(fdk_aac::dec::Transport::Raw);
        dec.config_raw(t.audio_specific_config()).expect("ASC");
        let mut left = Vec::new();
        let mut frame = vec![0i16; AAC_FRAME as usize * CHANNELS];
        for f in &aac {
            dec.fill(&f.data).expect("fill");
            dec.decode_frame(&mut frame).expect("AAC decode");
            left.extend(frame.chunks_exact(CHANNELS).map(|p| p[0]));
        }
        // The last second, past both codecs' start-up.
        let tail = &left[left.len() - RATE..];
        let rms =
            (tail.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / tail.len() as f64).sqrt();
        let expected_rms = amplitude / 2f64.sqrt();
        assert!(
            (rms - expected_rms).abs() < expected_rms * 0.2,
            "RMS {rms:.0}, expected about {expected_rms:.0}"
        );
        let crossings = tail.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        // Two zero crossings per period: 880 in one second of 440 Hz.
        assert!(
            (860..=900).contains(&crossings),
            "{crossings} zero crossings in 1 s, expected about 880"
        );
    }
}
