//! Viewers of a stream on this node: WebRTC (WHEP) sessions in the SFU
//! plus LL-HLS clients reloading its playlists ([`transcoder::audience`],
//! a lower bound behind CDNs and shared NATs). What presence, the stream
//! list, analytics and the stream-session recorder count.

use sfu::Sfu;
use signaling::ViewerSource;

#[derive(Clone)]
pub struct Viewers {
    pub sfu: Sfu,
    pub hls: Option<transcoder::Hls>,
}

impl Viewers {
    pub fn new(sfu: Sfu, hls: Option<transcoder::Hls>) -> Viewers {
        Viewers { sfu, hls }
    }

    pub fn webrtc(&self, stream: &str) -> usize {
        self.sfu.viewer_count(stream)
    }

    pub fn hls(&self, stream: &str) -> usize {
        self.hls.as_ref().map_or(0, |h| h.audience(stream))
    }

    pub fn total(&self, stream: &str) -> usize {
        self.webrtc(stream) + self.hls(stream)
    }
}

/// For the bus's presence task.
impl ViewerSource for Viewers {
    fn streams(&self) -> Vec<String> {
        self.sfu.live_streams()
    }

    fn viewers(&self, stream: &str) -> usize {
        self.total(stream)
    }
}
