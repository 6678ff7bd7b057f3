//! What each side is offered: publishers may send anything we can forward;
//! viewers are answered with the codecs they offered that we can forward,
//! H.264 narrowed to the profile that matches what the publisher really sends.

use str0m::format::{Codec, FormatParams};
use str0m::media::Frequency;
use str0m::rtp::{Extension, ExtensionMap};
use str0m::RtcConfig;

use crate::h264::{self, ProfileLevelId};

fn opus_stereo(cfg: &mut RtcConfig) {
    // stereo=1 is mirrored to viewers so a stereo source (OBS sends stereo)
    // is decoded as stereo; a mono source in a stereo-declared stream is fine.
    cfg.codec_config().add_config(
        111.into(),
        None,
        Codec::Opus,
        Frequency::FORTY_EIGHT_KHZ,
        Some(2),
        FormatParams {
            min_p_time: Some(10),
            use_inband_fec: Some(true),
            stereo: Some(true),
            ..Default::default()
        },
    );
}

/// Configuration for a publisher's session.
pub fn publisher_config(base: RtcConfig) -> RtcConfig {
    let mut cfg = base
        .clear_codecs()
        .enable_vp8(true)
        .enable_h264(true)
        .enable_vp9(true)
        .enable_av1(true);
    opus_stereo(&mut cfg);
    cfg
}

/// Configuration for a viewer's session, from its offer and what is known of
/// the stream.
pub fn viewer_config(
    base: RtcConfig,
    offered: &[ProfileLevelId],
    real_h264: Option<ProfileLevelId>,
) -> RtcConfig {
    let mut cfg = base
        .clear_codecs()
        .enable_vp8(true)
        .enable_vp9(true)
        .enable_av1(true);
    opus_stereo(&mut cfg);
    let chosen: Vec<ProfileLevelId> = match real_h264 {
        Some(real) => h264::choose_profile(real, offered).into_iter().collect(),
        // Publisher not here yet: answer every profile the viewer can take.
        None => offered.to_vec(),
    };
    // Payload numbers are placeholders (the answer adopts the viewer's), but
    // they must not collide with the other codecs' defaults.
    const FREE_PTS: [(u8, u8); 9] = [
        (106, 107),
        (108, 109),
        (112, 113),
        (114, 115),
        (116, 117),
        (118, 119),
        (120, 121),
        (123, 124),
        (125, 126),
    ];
    for (p, (pt, rtx)) in chosen.iter().zip(FREE_PTS) {
        cfg.codec_config()
            .add_h264(pt.into(), Some(rtx.into()), true, p.0);
    }
    cfg
}

/// str0m's standard header extensions minus transport-wide sequence
/// numbers (TWCC), for viewers that run no bandwidth estimation.
pub fn extensions_without_twcc() -> ExtensionMap {
    let mut exts = ExtensionMap::empty();
    for (id, ext) in ExtensionMap::standard().iter() {
        if *ext != Extension::TransportSequenceNumber {
            exts.set(id, ext.clone());
        }
    }
    exts
}
