//! Cost of the ABR ladder per source frame on this machine: one openh264
//! decode of the source, then per rung the scale and the openh264 encode
//! (what `relaycast_hls_encode_seconds` measures in production).
//!
//! `cargo bench -p transcoder --bench ladder_encode` (release build). The
//! source is a synthetic moving picture encoded once at 2.5 Mbit/s (720p)
//! and 4.5 Mbit/s (1080p), 30 fps, keyframe every 2 s.

use std::time::{Duration, Instant};

use openh264::decoder::Decoder;
use openh264::formats::YUVBuffer;
use transcoder::ladder::{default_rungs, rung_encoder, rungs_for, scale_i420, Rung};

const FRAMES: usize = 150;

fn source(w: usize, h: usize, bitrate: u32) -> Vec<Vec<u8>> {
    let mut enc = rung_encoder(&Rung::new("src", h as u32, bitrate), 30.0).expect("encoder");
    (0..FRAMES)
        .map(|i| {
            let mut yuv = vec![0u8; w * h * 3 / 2];
            for y in 0..h {
                for x in 0..w {
                    yuv[y * w + x] = ((x + 3 * i) ^ (y + i)) as u8;
                }
            }
            for c in yuv[w * h..].iter_mut().enumerate() {
                *c.1 = (128 + (c.0 / w + i) % 64) as u8;
            }
            if i % 60 == 0 {
                enc.force_intra_frame();
            }
            enc.encode(&YUVBuffer::from_vec(yuv, w, h))
                .expect("encode")
                .to_vec()
        })
        .collect()
}

fn main() {
    for (w, h, bitrate) in [(1280usize, 720usize, 2_500_000u32), (1920, 1080, 4_500_000)] {
        let frames = source(w, h, bitrate);
        let rungs = rungs_for((w as u32, h as u32), &default_rungs());
        let mut decoder = Decoder::new().expect("decoder");
        let mut encoders: Vec<_> = rungs
            .iter()
            .map(|(r, _, _)| rung_encoder(r, 30.0).expect("encoder"))
            .collect();
        let mut decode = Duration::ZERO;
        let mut per_rung = vec![Duration::ZERO; rungs.len()];
        let mut bytes = vec![0usize; rungs.len()];
        for (i, au) in frames.iter().enumerate() {
            let t = Instant::now();
            let Some(picture) = decoder.decode(au).expect("decode") else {
                continue;
            };
            decode += t.elapsed();
            for (k, (_, rw, rh)) in rungs.iter().enumerate() {
                let t = Instant::now();
                let mut buf = Vec::new();
                scale_i420(&picture, *rw as usize, *rh as usize, &mut buf);
                let yuv = YUVBuffer::from_vec(buf, *rw as usize, *rh as usize);
                if i % 60 == 0 {
                    encoders[k].force_intra_frame();
                }
                bytes[k] += encoders[k].encode(&yuv).expect("encode").to_vec().len();
                per_rung[k] += t.elapsed();
            }
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0 / FRAMES as f64;
        println!("source {w}x{h}: decode {:.2} ms/frame", ms(decode));
        let mut total = ms(decode);
        for (k, (r, rw, rh)) in rungs.iter().enumerate() {
            println!(
                "  {} ({rw}x{rh}): scale+encode {:.2} ms/frame, {:.0} kbit/s",
                r.name,
                ms(per_rung[k]),
                bytes[k] as f64 * 8.0 * 30.0 / FRAMES as f64 / 1000.0
            );
            total += ms(per_rung[k]);
        }
        println!(
            "  ladder total {total:.2} ms/frame = {:.0} % of one core at 30 fps",
            total * 30.0 / 10.0
        );
    }
}
