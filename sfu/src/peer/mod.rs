//! One WebRTC session and what it does with the events its `Rtc` emits.
//! Owned by exactly one engine. What every session has (its `Rtc`, stream,
//! connection state) is the [`Conn`]; what only a publisher or only a
//! viewer does lives in [`Publisher`] and [`Viewer`], so a request meant
//! for one role cannot reach the other unnoticed: the engine matches the
//! role where it dispatches.

mod publisher;
mod timeline;
mod viewer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::{Event, IceConnectionState, Rtc};

pub(crate) use self::publisher::Publisher;
pub(crate) use self::viewer::{Estimation, GopBurst, Viewer};
use crate::frame::{Epoch, Frame, StreamId};
use crate::layers::LayerCap;
use crate::metrics::KeyframeOrigin;
use crate::offer::Offer;
use crate::session_stats::StatsCell;
use crate::stream::StreamHub;
use crate::{IceCredentials, SessionId};

/// Keyframe requests to a publisher are throttled to one per this interval.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_secs(1);
/// A session that has not connected by then is given up.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Publisher,
    Viewer,
}

/// What every session has, whatever its role.
pub(crate) struct Conn {
    pub session: SessionId,
    pub hub: Arc<StreamHub>,
    pub rtc: Rtc,
    /// The remote offer the session was (last) negotiated with; an ICE
    /// restart re-applies it with the remote's new credentials.
    pub offer_sdp: String,
    pub created: Instant,
    pub connected: bool,
    pub next_timeout: Instant,
    /// Counters for analytics, shared with [`crate::Sfu::session_stats`].
    pub stats: Arc<StatsCell>,
}

pub(crate) enum PeerRole {
    Publisher(Publisher),
    Viewer(Viewer),
}

pub(crate) struct Peer {
    pub conn: Conn,
    pub role: PeerRole,
}

/// What handling an event asks of the engine.
#[derive(Default)]
pub(crate) struct Effects {
    /// Frames to fan out to viewers of the publisher's stream.
    pub frames: Vec<Arc<Frame>>,
    /// Ask the stream's publisher for a keyframe (of this layer, or of its
    /// main layer).
    pub keyframe_requests: Vec<(KeyframeOrigin, Option<u8>)>,
    /// A viewer with video just connected: give it the cached GOP, or ask
    /// the publisher for a keyframe when there is none.
    pub viewer_joined: bool,
    /// The stream went live (first frame of a publisher session) or resumed.
    pub stream_event: Option<crate::StreamEventKind>,
    /// A viewer's bandwidth estimate arrived, and from where.
    pub estimate: Option<crate::ViewerEstimator>,
}

impl Peer {
    fn new(
        session: SessionId,
        hub: Arc<StreamHub>,
        rtc: Rtc,
        offer_sdp: String,
        now: Instant,
        role: PeerRole,
    ) -> Peer {
        Peer {
            conn: Conn {
                session,
                hub,
                rtc,
                offer_sdp,
                created: now,
                connected: false,
                next_timeout: now,
                stats: Arc::default(),
            },
            role,
        }
    }

    pub fn new_publisher(
        session: SessionId,
        hub: Arc<StreamHub>,
        rtc: Rtc,
        offer_sdp: String,
        epoch: Epoch,
        now: Instant,
    ) -> Peer {
        let role = PeerRole::Publisher(Publisher::new(epoch));
        Peer::new(session, hub, rtc, offer_sdp, now, role)
    }

    pub fn new_viewer(
        session: SessionId,
        hub: Arc<StreamHub>,
        rtc: Rtc,
        offer_sdp: String,
        now: Instant,
        cap: LayerCap,
        estimation: Estimation,
    ) -> Peer {
        let role = PeerRole::Viewer(Viewer::new(cap, estimation));
        Peer::new(session, hub, rtc, offer_sdp, now, role)
    }

    pub fn role(&self) -> Role {
        match self.role {
            PeerRole::Publisher(_) => Role::Publisher,
            PeerRole::Viewer(_) => Role::Viewer,
        }
    }

    /// The session as a viewer, if it is one.
    pub fn viewer(&mut self) -> Option<(&mut Conn, &mut Viewer)> {
        match &mut self.role {
            PeerRole::Viewer(v) => Some((&mut self.conn, v)),
            PeerRole::Publisher(_) => None,
        }
    }

    /// The session as a publisher, if it is one.
    pub fn publisher(&mut self) -> Option<(&mut Conn, &mut Publisher)> {
        match &mut self.role {
            PeerRole::Publisher(p) => Some((&mut self.conn, p)),
            PeerRole::Viewer(_) => None,
        }
    }

    /// Whether this is a viewer of the stream `hub_id`.
    pub fn views(&self, hub_id: StreamId) -> bool {
        self.conn.hub.id == hub_id && matches!(self.role, PeerRole::Viewer(_))
    }

    pub fn handle_event(&mut self, event: Event, now: Instant, fx: &mut Effects) {
        let conn = &mut self.conn;
        match &event {
            Event::Connected => {
                conn.connected = true;
                tracing::debug!(session = %conn.session, "connected");
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                tracing::debug!(session = %conn.session, "ICE disconnected");
                conn.rtc.disconnect();
                return;
            }
            Event::MediaEgressStats(s) => {
                conn.stats.egress(s);
                return;
            }
            _ => {}
        }
        match &mut self.role {
            PeerRole::Publisher(p) => p.handle_event(conn, event, now, fx),
            PeerRole::Viewer(v) => v.handle_event(conn, event, now, fx),
        }
    }
}

impl Conn {
    /// ICE restart (WHIP/WHEP PATCH with new credentials): re-applies the
    /// session's offer with the remote's new ufrag/pwd and without its old
    /// candidates, so str0m restarts its agent as for an SDP re-offer — new
    /// local credentials, old remote candidates and pairs dropped — and then
    /// nominates whatever pair the remote checks with the new credentials.
    /// (Only swapping the credentials keeps the old pair nominated: a new pair
    /// of equal priority never replaces it, so media keeps going to the old
    /// address until that pair times out, 15 s later.) Returns our new
    /// credentials.
    pub fn ice_restart(&mut self, remote: &IceCredentials) -> Option<IceCredentials> {
        let offer = match Offer::restart(&self.offer_sdp, &remote.ufrag, &remote.pwd) {
            Ok(offer) => offer,
            Err(e) => {
                tracing::debug!(session = %self.session, "ICE restart: re-offer does not parse: {e}");
                return None;
            }
        };
        let (parsed, text) = offer.into_parts();
        if let Err(e) = self.rtc.sdp_api().accept_offer(parsed) {
            tracing::debug!(session = %self.session, "ICE restart: re-offer refused: {e}");
            return None;
        }
        self.offer_sdp = text;
        let ours = self.rtc.direct_api().local_ice_credentials();
        Some(IceCredentials {
            ufrag: ours.ufrag,
            pwd: ours.pass,
        })
    }
}
