//! AAC → Opus, once per ingest, for WebRTC viewers (WebRTC has no AAC).
//! Fraunhofer FDK decodes (`fdk-aac`, raw AAC with the publisher's
//! AudioSpecificConfig; mono is up-mixed and more than two channels
//! down-mixed to stereo), libopus encodes 20 ms packets at 48 kHz stereo
//! (`opus`). Other sample rates are converted to 48 kHz by linear
//! interpolation ([`Linear`]).
//!
//! Timing: the first AAC frame's container time anchors the Opus clock
//! (48 kHz); Opus packet k starts at anchor + k × 960. When an AAC frame's
//! container time strays from where the samples so far put it by more than
//! [`RESYNC`] (a gap in the publisher's audio, a timestamp jump), buffered
//! samples are dropped and the clock is anchored again.

use std::time::Duration;

/// Opus packet length: 20 ms at 48 kHz.
pub const OPUS_FRAME: usize = 960;
const CHANNELS: usize = 2;
/// Largest decoded AAC frame we accept: HE-AAC (2048 samples) stereo,
/// with room for the decoder's multichannel output before down-mixing.
const MAX_PCM: usize = 2048 * 8;
/// Container time drift beyond which the Opus clock is anchored again.
const RESYNC: Duration = Duration::from_millis(200);
const OPUS_BITRATE: i32 = 128_000;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    #[error("AAC decoder: {0}")]
    Aac(String),
    #[error("AAC sample rate {0} Hz is not supported")]
    Rate(i32),
    #[error("an AAC frame before its AudioSpecificConfig")]
    NotConfigured,
    #[error("Opus encoder: {0}")]
    Opus(#[from] opus::Error),
}

/// One Opus packet and its start on the 48 kHz clock.
#[derive(Debug)]
pub struct OpusPacket {
    pub time_48k: u64,
    pub data: Vec<u8>,
}

pub struct AacToOpus {
    decoder: Option<fdk_aac::dec::Decoder>,
    encoder: opus::Encoder,
    resampler: Option<Linear>,
    pcm: Vec<i16>,
    resampled: Vec<i16>,
    /// 48 kHz stereo samples waiting for a whole Opus frame (interleaved).
    fifo: Vec<i16>,
    /// Clock time of `fifo[0]`.
    fifo_start: u64,
    /// Where the next decoded sample lands on the 48 kHz clock.
    next_in: Option<u64>,
    out: Vec<u8>,
}

impl std::fmt::Debug for AacToOpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AacToOpus")
            .field("next_in", &self.next_in)
            .finish_non_exhaustive()
    }
}

impl AacToOpus {
    pub fn new() -> Result<AacToOpus, AudioError> {
        let mut encoder =
            opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Audio)?;
        encoder.set_bitrate(opus::Bitrate::Bits(OPUS_BITRATE))?;
        Ok(AacToOpus {
            decoder: None,
            encoder,
            resampler: None,
            pcm: vec![0; MAX_PCM],
            resampled: Vec::new(),
            fifo: Vec::new(),
            fifo_start: 0,
            next_in: None,
            out: vec![0; 4000],
        })
    }

    /// Takes the AudioSpecificConfig (sent before the first frame).
    pub fn configure(&mut self, asc: &[u8]) -> Result<(), AudioError> {
        let aac = |e: fdk_aac::dec::DecoderError| AudioError::Aac(e.message().to_string());
        let mut d = fdk_aac::dec::Decoder::new(fdk_aac::dec::Transport::Raw);
        d.config_raw(asc).map_err(aac)?;
        d.set_min_output_channels(CHANNELS).map_err(aac)?;
        d.set_max_output_channels(CHANNELS).map_err(aac)?;
        self.decoder = Some(d);
        self.resampler = None;
        Ok(())
    }

    /// Decodes one raw AAC frame whose container time is `time_ms` and
    /// appends the Opus packets that became complete to `out`.
    pub fn push(
        &mut self,
        time_ms: i64,
        frame: &[u8],
        out: &mut Vec<OpusPacket>,
    ) -> Result<(), AudioError> {
        let aac = |e: fdk_aac::dec::DecoderError| AudioError::Aac(e.message().to_string());
        let decoder = self.decoder.as_mut().ok_or(AudioError::NotConfigured)?;
        let consumed = decoder.fill(frame).map_err(aac)?;
        if consumed != frame.len() {
            return Err(AudioError::Aac(
                "decoder did not take the whole frame".into(),
            ));
        }
        decoder.decode_frame(&mut self.pcm).map_err(aac)?;
        let info = decoder.stream_info();
        let rate = info.sampleRate;
        let channels = usize::try_from(info.numChannels).unwrap_or(0);
        let samples = usize::try_from(info.frameSize).unwrap_or(0);
        if channels != CHANNELS || samples * channels > self.pcm.len() {
            return Err(AudioError::Aac(format!(
                "unexpected output: {channels} channels of {samples} samples"
            )));
        }
        let rate_u = u32::try_from(rate).map_err(|_| AudioError::Rate(rate))?;
        if !(8_000..=96_000).contains(&rate_u) {
            return Err(AudioError::Rate(rate));
        }
        let pcm = &self.pcm[..samples * CHANNELS];
        let input: &[i16] = if rate_u == 48_000 {
            pcm
        } else {
            let r = self
                .resampler
                .get_or_insert_with(|| Linear::new(rate_u, 48_000));
            self.resampled.clear();
            r.process(pcm, &mut self.resampled);
            &self.resampled
        };
        let at = u64::try_from(time_ms.max(0)).unwrap_or(0) * 48;
        let resync = RESYNC.as_millis() as u64 * 48;
        match self.next_in {
            Some(next) if next.abs_diff(at) <= resync => {}
            _ => {
                // First frame, or the publisher's audio jumped: start over.
                self.fifo.clear();
                self.fifo_start = at;
                self.next_in = Some(at);
            }
        }
        self.fifo.extend_from_slice(input);
        self.next_in = self.next_in.map(|n| n + (input.len() / CHANNELS) as u64);
        let frame_len = OPUS_FRAME * CHANNELS;
        let mut start = 0;
        while self.fifo.len() - start >= frame_len {
            let n = self
                .encoder
                .encode(&self.fifo[start..start + frame_len], &mut self.out)?;
            out.push(OpusPacket {
                time_48k: self.fifo_start,
                data: self.out[..n].to_vec(),
            });
            start += frame_len;
            self.fifo_start += OPUS_FRAME as u64;
        }
        self.fifo.drain(..start);
        Ok(())
    }
}

/// Linear-interpolation sample-rate conversion of interleaved stereo,
/// carried across calls. Enough for contribution audio whose rate is not
/// 48 kHz (ffmpeg's default 44.1 kHz); a 48 kHz source is not touched.
struct Linear {
    /// Input samples per output sample.
    step: f64,
    /// Position of the next output sample, in input frames relative to the
    /// current input's first frame (−1 is the previous call's last frame).
    pos: f64,
    prev: Option<[i16; 2]>,
}

impl Linear {
    fn new(from: u32, to: u32) -> Linear {
        Linear {
            step: f64::from(from) / f64::from(to),
            pos: 0.0,
            prev: None,
        }
    }

    fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let n = input.len() / 2;
        if n == 0 {
            return;
        }
        let frame = |i: isize, prev: [i16; 2]| -> [i16; 2] {
            if i < 0 {
                prev
            } else {
                let i = i as usize * 2;
                [input[i], input[i + 1]]
            }
        };
        let prev = self.prev.unwrap_or([input[0], input[1]]);
        let last = (n - 1) as f64;
        while self.pos < last {
            let i = self.pos.floor();
            let frac = self.pos - i;
            let a = frame(i as isize, prev);
            let b = frame(i as isize + 1, prev);
            for c in 0..2 {
                let v = f64::from(a[c]) + (f64::from(b[c]) - f64::from(a[c])) * frac;
                out.push(v.round() as i16);
            }
            self.pos += self.step;
        }
        self.pos -= n as f64;
        self.prev = Some([input[(n - 1) * 2], input[(n - 1) * 2 + 1]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_conversion_keeps_the_rate_ratio_across_calls() {
        let mut r = Linear::new(44_100, 48_000);
        let mut out = Vec::new();
        let input: Vec<i16> = (0..1024 * 2).map(|i| (i / 2) as i16).collect();
        for _ in 0..100 {
            r.process(&input, &mut out);
        }
        let produced = out.len() / 2;
        let expected = 102_400.0 * 48_000.0 / 44_100.0;
        assert!(
            (produced as f64 - expected).abs() < 2.0,
            "{produced} vs {expected}"
        );
    }

    #[test]
    fn frames_before_configuration_are_refused() {
        let mut a = AacToOpus::new().expect("encoder");
        let mut out = Vec::new();
        assert!(matches!(
            a.push(0, &[1, 2, 3], &mut out),
            Err(AudioError::NotConfigured)
        ));
        // AAC-LC, 44.1 kHz, stereo.
        a.configure(&[0x12, 0x10]).expect("AudioSpecificConfig");
    }
}
