//! The synthetic video: one closed GOP per simulcast layer, encoded once at
//! start with openh264 and looped. The picture is textured and moving, so the
//! encoder (in bitrate mode) spends its budget: the packet rate is the
//! configured bitrate, as with a camera, not the few bytes a still pattern
//! would cost.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, Profile,
    RateControlMode, UsageType,
};
use openh264::formats::YUVBuffer;
use openh264::{OpenH264API, Timestamp};

pub const FPS: u32 = 30;
/// One keyframe per loop.
pub const GOP: Duration = Duration::from_secs(2);
pub const FRAME_INTERVAL: Duration = Duration::from_nanos(1_000_000_000 / FPS as u64);
/// 90 kHz RTP ticks per frame.
pub const TICKS_PER_FRAME: u64 = 90_000 / FPS as u64;

#[derive(Debug, Clone, Copy)]
pub struct LayerSpec {
    pub rid: &'static str,
    pub width: usize,
    pub height: usize,
    pub bitrate_bps: u32,
}

/// Smallest first, as RFC 8853 examples and browsers order them.
pub const SIMULCAST: [LayerSpec; 3] = [
    LayerSpec {
        rid: "q",
        width: 320,
        height: 180,
        bitrate_bps: 150_000,
    },
    LayerSpec {
        rid: "h",
        width: 640,
        height: 360,
        bitrate_bps: 500_000,
    },
    LayerSpec {
        rid: "f",
        width: 1280,
        height: 720,
        bitrate_bps: 1_500_000,
    },
];

/// An encoded layer: `frames[0]` is an IDR, the others are P frames that
/// refer back to it, so the loop can restart at 0 at any time (that is how a
/// keyframe request is answered).
pub struct EncodedLayer {
    pub spec: LayerSpec,
    pub frames: Vec<Arc<[u8]>>,
}

impl EncodedLayer {
    pub fn bytes_per_loop(&self) -> usize {
        self.frames.iter().map(|f| f.len()).sum()
    }
}

/// Encodes all layers, one thread each.
pub fn encode_layers(specs: &[LayerSpec]) -> Result<Vec<EncodedLayer>> {
    let handles: Vec<_> = specs
        .iter()
        .map(|&spec| std::thread::spawn(move || encode_layer(spec)))
        .collect();
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .map_err(|_| anyhow::anyhow!("encoder thread panicked"))?
        })
        .collect()
}

/// Frames encoded and thrown away before the loop, so rate control has
/// settled and the loop's IDR is as large as a steady-state keyframe.
const WARM_UP_FRAMES: usize = 30;

fn encode_layer(spec: LayerSpec) -> Result<EncodedLayer> {
    let frames = (GOP.as_millis() as u64 * u64::from(FPS) / 1000) as usize;
    let config = EncoderConfig::new()
        .profile(Profile::Baseline)
        .usage_type(UsageType::CameraVideoRealTime)
        .rate_control_mode(RateControlMode::Bitrate)
        .bitrate(BitRate::from_bps(spec.bitrate_bps))
        .max_frame_rate(FrameRate::from_hz(FPS as f32))
        .skip_frames(false)
        .scene_change_detect(false)
        .complexity(Complexity::Low)
        // No periodic IDR: the loop's first frame is forced to be one.
        .intra_frame_period(IntraFramePeriod::from_num_frames(0))
        .num_threads(1);
    let mut encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
        .context("creating openh264 encoder")?;
    let mut picture = Picture::new(spec.width, spec.height);
    let mut out = Vec::with_capacity(frames);
    for index in 0..WARM_UP_FRAMES + frames {
        let yuv = picture.next(index);
        if index == WARM_UP_FRAMES {
            encoder.force_intra_frame();
        }
        let millis = index as u64 * 1000 / u64::from(FPS);
        let bitstream = encoder
            .encode_at(&yuv, Timestamp::from_millis(millis))
            .with_context(|| format!("encoding {} frame {index}", spec.rid))?;
        let data = bitstream.to_vec();
        ensure!(
            !data.is_empty(),
            "openh264 skipped {} frame {index}",
            spec.rid
        );
        if index >= WARM_UP_FRAMES {
            out.push(Arc::from(data));
        }
    }
    ensure!(
        out.first().is_some_and(|au| is_idr(au)),
        "first {} frame is not an IDR",
        spec.rid
    );
    ensure!(
        !out.iter().skip(1).any(|au| is_idr(au)),
        "{}: an IDR inside the GOP would break looping",
        spec.rid
    );
    Ok(EncodedLayer { spec, frames: out })
}

pub fn is_idr(au: &[u8]) -> bool {
    crate::sei::nal_units(au).any(|n| n.first().is_some_and(|h| h & 0x1f == 5))
}

/// A scrolling noise texture with a bouncing block, plus light per-frame
/// noise: motion the encoder can predict (P frames much smaller than the
/// IDR, as from a camera) and enough entropy to use the bitrate.
struct Picture {
    width: usize,
    height: usize,
    texture: Vec<u8>,
    rng: u64,
}

impl Picture {
    fn new(width: usize, height: usize) -> Picture {
        let mut p = Picture {
            width,
            height,
            texture: Vec::new(),
            rng: 0x9e37_79b9_7f4a_7c15 ^ (width as u64),
        };
        // Noise in 8x8 blocks over a gradient: detail the encoder must code,
        // but far cheaper intra than per-pixel noise, so an IDR costs what a
        // camera's does (several P frames, not a second of bitrate).
        let (tw, th) = (width * 2, height);
        let blocks: Vec<u8> = (0..(tw / 8 + 1) * (th / 8 + 1))
            .map(|_| p.noise())
            .collect();
        p.texture = (0..tw * th)
            .map(|i| {
                let (x, y) = (i % tw, i / tw);
                let b = blocks[(y / 8) * (tw / 8 + 1) + x / 8];
                ((x + y) % 128) as u8 / 2 + b / 4
            })
            .collect();
        p
    }

    fn noise(&mut self) -> u8 {
        // xorshift64*: fast, deterministic, good enough for texture.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
    }

    fn next(&mut self, index: usize) -> YUVBuffer {
        let (w, h) = (self.width, self.height);
        let mut data = vec![128u8; w * h * 3 / 2];
        let block = h / 6;
        let bx = (index * w / 60) % (w - block);
        let by = h / 2 - block / 2;
        let shift = (index * 2) % w;
        for y in 0..h {
            let row = &self.texture[y * 2 * w..(y + 1) * 2 * w];
            for x in 0..w {
                let v = if (bx..bx + block).contains(&x) && (by..by + block).contains(&y) {
                    235
                } else {
                    row[x + shift] + 40
                };
                data[y * w + x] = v;
            }
        }
        // Temporal noise on every 8th pixel: a little entropy per frame.
        for i in (0..w * h).step_by(8) {
            let n = self.noise() >> 6;
            data[i] = data[i].saturating_add(n);
        }
        YUVBuffer::from_vec(data, w, h)
    }
}
