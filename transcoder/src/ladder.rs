//! The ABR ladder: lower renditions of the source video, from one decode
//! and one `openh264` encode per rung, on a thread of their own per stream
//! so neither the forwarder nor the passthrough packager ever waits for an
//! encoder.
//!
//! The packager hands each source sample (its decode time, duration,
//! keyframe flag and Annex B access unit) to the ladder thread through a
//! bounded queue; a full queue drops the sample and the ladder waits for
//! the next keyframe (its decoder needs an unbroken reference chain). Each
//! rung encodes every decoded picture with the source sample's timing and
//! forces an IDR exactly where the source has a keyframe, so the rung's
//! track cuts its parts and segments at the same times as the source's:
//! segments line up across renditions.

use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use openh264::decoder::Decoder;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, Profile, UsageType,
};
use openh264::formats::{YUVSlices, YUVSource};
use openh264::OpenH264API;
use prometheus::HistogramVec;

use crate::hls::StreamEntry;
use crate::track::TrackSample;

/// One rung of the ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rung {
    /// Path segment and NAME of the rendition (`720p`).
    pub name: String,
    pub height: u32,
    /// Target bits per second of the encoder.
    pub bitrate: u32,
}

impl Rung {
    pub fn new(name: &str, height: u32, bitrate: u32) -> Rung {
        Rung {
            name: name.to_string(),
            height,
            bitrate,
        }
    }
}

/// 720p, 480p, 360p.
pub fn default_rungs() -> Vec<Rung> {
    vec![
        Rung::new("720p", 720, 2_500_000),
        Rung::new("480p", 480, 1_200_000),
        Rung::new("360p", 360, 700_000),
    ]
}

/// The rungs below the source's height, with their picture sizes (width
/// keeps the source's aspect ratio; both even, as 4:2:0 needs).
pub fn rungs_for(source: (u32, u32), rungs: &[Rung]) -> Vec<(Rung, u32, u32)> {
    let (sw, sh) = source;
    rungs
        .iter()
        .filter(|r| r.height < sh && r.height >= 16)
        .map(|r| {
            let h = r.height & !1;
            let w = ((u64::from(sw) * u64::from(h) / u64::from(sh.max(1))) as u32 & !1).max(16);
            (r.clone(), w, h)
        })
        .collect()
}

/// A source sample handed to the ladder.
#[derive(Debug, Clone)]
pub struct LadderInput {
    pub dts: u64,
    pub duration: u32,
    pub keyframe: bool,
    pub wallclock: SystemTime,
    pub annex_b: Arc<[u8]>,
}

/// The packager's end of a ladder thread.
pub struct LadderHandle {
    tx: mpsc::SyncSender<LadderInput>,
    thread: std::thread::JoinHandle<()>,
    waiting_for_key: bool,
    pub dropped: u64,
}

impl LadderHandle {
    /// Offers a sample; never blocks.
    pub fn offer(&mut self, input: LadderInput) {
        if self.waiting_for_key && !input.keyframe {
            return;
        }
        match self.tx.try_send(input) {
            Ok(()) => self.waiting_for_key = false,
            Err(_) => {
                self.dropped += 1;
                self.waiting_for_key = true;
            }
        }
    }

    /// Closes the queue: the thread encodes what is queued, frees its
    /// decoder and encoders and ends. Join the returned handle to know
    /// that memory is back with the allocator.
    pub fn close(self) -> std::thread::JoinHandle<()> {
        drop(self.tx);
        self.thread
    }
}

/// Starts the ladder thread of one stream. `sizes` are the rungs' picture
/// sizes (index = rung index in the packager). The thread ends when the
/// handle is dropped or closed ([`LadderHandle::close`]), or the stream
/// entry is gone.
pub fn spawn(
    entry: Weak<StreamEntry>,
    sizes: Vec<(Rung, u32, u32)>,
    frame_rate: f32,
    encode_seconds: HistogramVec,
    capacity: usize,
) -> std::io::Result<LadderHandle> {
    let (tx, rx) = mpsc::sync_channel::<LadderInput>(capacity.max(1));
    let thread = std::thread::Builder::new()
        .name("hls-ladder".into())
        .spawn(move || run(entry, sizes, frame_rate, encode_seconds, rx))?;
    Ok(LadderHandle {
        tx,
        thread,
        waiting_for_key: true,
        dropped: 0,
    })
}

/// The encoder of one rung: constrained baseline, CBR at the rung's
/// bitrate, no periodic IDR (IDRs are forced at source keyframes).
pub fn rung_encoder(rung: &Rung, frame_rate: f32) -> Result<Encoder, openh264::Error> {
    let config = EncoderConfig::new()
        .profile(Profile::Baseline)
        .usage_type(UsageType::CameraVideoRealTime)
        .max_frame_rate(FrameRate::from_hz(frame_rate.max(1.0)))
        .bitrate(BitRate::from_bps(rung.bitrate))
        .skip_frames(false)
        .intra_frame_period(IntraFramePeriod::from_num_frames(100_000))
        .num_threads(1);
    Encoder::with_api_config(OpenH264API::from_source(), config)
}

struct RungEncoder {
    encoder: Encoder,
    width: usize,
    height: usize,
    /// The scaled picture, reused every frame: a fresh 0.3–1.4 MB buffer
    /// per frame and rung would be allocated and freed 60–90 times a
    /// second, past glibc's mmap threshold at first, then (the threshold
    /// rises to the largest freed block) churning the thread's arena.
    picture: Vec<u8>,
    timer: prometheus::Histogram,
}

fn run(
    entry: Weak<StreamEntry>,
    sizes: Vec<(Rung, u32, u32)>,
    frame_rate: f32,
    encode_seconds: HistogramVec,
    rx: mpsc::Receiver<LadderInput>,
) {
    let mut decoder = match Decoder::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("ladder: openh264 decoder: {e}");
            return;
        }
    };
    let mut encoders = Vec::with_capacity(sizes.len());
    for (rung, w, h) in &sizes {
        match rung_encoder(rung, frame_rate) {
            Ok(encoder) => encoders.push(RungEncoder {
                encoder,
                width: *w as usize,
                height: *h as usize,
                picture: Vec::new(),
                timer: encode_seconds.with_label_values(&[rung.name.as_str()]),
            }),
            Err(e) => {
                tracing::error!("ladder: openh264 encoder for {}: {e}", rung.name);
                return;
            }
        }
    }
    let mut outputs: Vec<Option<TrackSample>> = Vec::with_capacity(encoders.len());
    while let Ok(input) = rx.recv() {
        let Some(entry) = entry.upgrade() else { return };
        outputs.clear();
        match decoder.decode(&input.annex_b) {
            Ok(Some(picture)) => {
                for enc in encoders.iter_mut() {
                    let started = Instant::now();
                    scale_i420(&picture, enc.width, enc.height, &mut enc.picture);
                    // Both sizes are even (`rungs_for`) and the scaler writes
                    // exactly w·h + 2·(w/2)·(h/2) bytes: the planes fit.
                    let (w, h) = (enc.width, enc.height);
                    let (y, uv) = enc.picture.split_at(w * h);
                    let (u, v) = uv.split_at(w / 2 * (h / 2));
                    let yuv = YUVSlices::new((y, u, v), (w, h), (w, w / 2, w / 2));
                    if input.keyframe {
                        enc.encoder.force_intra_frame();
                    }
                    let encoded = enc.encoder.encode(&yuv).map(|b| b.to_vec());
                    // Scale + encode: what one rung costs per frame.
                    enc.timer.observe(started.elapsed().as_secs_f64());
                    outputs.push(match encoded {
                        Ok(au) if !au.is_empty() => Some(TrackSample {
                            dts: input.dts,
                            duration: input.duration,
                            keyframe: input.keyframe,
                            data: Bytes::from(au),
                            wallclock: input.wallclock,
                        }),
                        Ok(_) => None,
                        Err(e) => {
                            tracing::warn!("ladder: encode: {e}");
                            None
                        }
                    });
                }
            }
            Ok(None) => continue,
            Err(e) => {
                tracing::debug!("ladder: decode: {e}");
                continue;
            }
        }
        entry.push_ladder(std::mem::take(&mut outputs));
    }
}

/// Scales a decoded 4:2:0 picture to `w` × `h` (area averaging when
/// shrinking, nearest sample otherwise) into a packed I420 buffer.
pub fn scale_i420(src: &impl YUVSource, w: usize, h: usize, out: &mut Vec<u8>) {
    let (sw, sh) = src.dimensions();
    let (ys, us, vs) = src.strides();
    out.clear();
    out.reserve(w * h * 3 / 2);
    scale_plane(src.y(), ys, sw, sh, w, h, out);
    scale_plane(
        src.u(),
        us,
        sw.div_ceil(2),
        sh.div_ceil(2),
        w / 2,
        h / 2,
        out,
    );
    scale_plane(
        src.v(),
        vs,
        sw.div_ceil(2),
        sh.div_ceil(2),
        w / 2,
        h / 2,
        out,
    );
}

fn scale_plane(
    src: &[u8],
    stride: usize,
    sw: usize,
    sh: usize,
    w: usize,
    h: usize,
    out: &mut Vec<u8>,
) {
    if sw == 0 || sh == 0 {
        out.resize(out.len() + w * h, 128);
        return;
    }
    for y in 0..h {
        let y0 = y * sh / h;
        let y1 = ((y + 1) * sh / h).max(y0 + 1).min(sh);
        for x in 0..w {
            let x0 = x * sw / w;
            let x1 = ((x + 1) * sw / w).max(x0 + 1).min(sw);
            let mut sum = 0u32;
            let mut n = 0u32;
            for yy in y0..y1 {
                let row = yy * stride;
                for xx in x0..x1 {
                    sum += u32::from(src.get(row + xx).copied().unwrap_or(128));
                    n += 1;
                }
            }
            out.push((sum / n.max(1)) as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openh264::formats::YUVBuffer;

    #[test]
    fn rungs_stay_below_the_source_and_keep_its_aspect() {
        let r = rungs_for((1280, 720), &default_rungs());
        let names: Vec<_> = r
            .iter()
            .map(|(r, w, h)| (r.name.as_str(), *w, *h))
            .collect();
        assert_eq!(names, vec![("480p", 852, 480), ("360p", 640, 360)]);
        assert!(rungs_for((320, 240), &default_rungs()).is_empty());
        let r = rungs_for((320, 240), &[Rung::new("180p", 180, 300_000)]);
        assert_eq!((r[0].1, r[0].2), (240, 180));
    }

    #[test]
    fn scaling_averages_areas() {
        let src = YUVBuffer::from_vec(
            [vec![10u8; 8], vec![30u8; 8], vec![50u8; 4], vec![70u8; 4]].concat(),
            4,
            4,
        );
        let mut out = Vec::new();
        scale_i420(&src, 2, 2, &mut out);
        // Rows 0-1 are 10, rows 2-3 are 30 in the 4x4 luma.
        assert_eq!(out, vec![10, 10, 30, 30, 50, 70]);
    }
}
