//! What travels on the realtime bus and, as JSON, on the stream WebSocket.

use serde::{Deserialize, Serialize};

/// One message on a stream's channel. Serialized with a `type` tag, e.g.
/// `{"type":"chat","id":"…","user":"alice","text":"hi","at_ms":…}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Message {
    /// A chat line.
    Chat(ChatMessage),
    /// A moderator removed the chat line `id`.
    Deleted { id: String },
    /// A moderator banned `user` from chatting (until `until_ms`, or for
    /// good when `None`).
    Banned {
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until_ms: Option<u64>,
    },
    /// Slow mode: a user may post once every `seconds` (0 = off).
    SlowMode { seconds: u32 },
    /// Viewers of the stream, summed over every node.
    Viewers { count: u64 },
    /// The stream's publisher went live, stalled, resumed or ended.
    Status { status: StreamStatus, at_ms: u64 },
    /// An integrator event, stamped and sequenced.
    Event(IntegratorEvent),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub id: String,
    pub user: String,
    pub text: String,
    /// Wall clock of acceptance, Unix milliseconds.
    pub at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamStatus {
    Live,
    Stalled,
    Resumed,
    Ended,
}

/// Where an integrator event sits on the stream's media timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaStamp {
    /// RTP time of the newest video frame (or audio frame, for audio-only
    /// streams) when the event was accepted, in `clock_rate` ticks
    /// (extended past wrap-around).
    pub rtp_time: u64,
    pub clock_rate: u32,
    /// Capture wall clock of that frame (Unix ms) from the publisher's
    /// sender reports, when known: the value HLS `EXT-X-DATERANGE` and a
    /// player's `RTCRtpReceiver` timestamps can be aligned on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_ms: Option<u64>,
}

/// An event posted by an integrator (betting odds, an auction bid closing…)
/// on a stream, in the order of `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntegratorEvent {
    pub stream: String,
    /// Strictly increasing per stream (across nodes when Redis is used).
    pub seq: u64,
    /// Opaque unique id.
    pub id: String,
    /// Wall clock when accepted, Unix milliseconds.
    pub at_ms: u64,
    /// The stream's media time when accepted; `None` when it is not live.
    pub media: Option<MediaStamp>,
    /// The integrator's JSON body, as posted.
    pub payload: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_a_type_tag_and_round_trip() {
        let m = Message::Chat(ChatMessage {
            id: "1".into(),
            user: "alice".into(),
            text: "hi".into(),
            at_ms: 5,
        });
        let json = serde_json::to_value(&m).expect("serializes");
        assert_eq!(json["type"], "chat");
        assert_eq!(json["user"], "alice");
        let back: Message = serde_json::from_value(json).expect("parses");
        assert_eq!(back, m);
        let s = Message::Status {
            status: StreamStatus::Stalled,
            at_ms: 1,
        };
        let json = serde_json::to_value(&s).expect("serializes");
        assert_eq!(json["type"], "status");
        assert_eq!(json["status"], "stalled");
    }

    /// Found by the `rest_json` fuzz target: without serde_json's
    /// `float_roundtrip`, `2.5e-30` in an integrator's payload parsed as
    /// 2.5000000000000002e-30, so every hop (bus, WebSocket) could change it.
    #[test]
    fn event_payload_numbers_survive_a_relay_exactly() {
        let sent = r#"{"type":"event","stream":"s","seq":30,"id":"3","at_ms":9,"media":null,"payload":{"score":[1,2.5e-30,-5.0,0.1,1.7976931348623157e+308]}}"#;
        let once: Message = serde_json::from_str(sent).expect("parses");
        let relayed = serde_json::to_string(&once).expect("serializes");
        assert!(
            relayed.contains("[1,2.5e-30,-5.0,0.1,1.7976931348623157e+308]"),
            "{relayed}"
        );
        let twice: Message = serde_json::from_str(&relayed).expect("parses again");
        assert_eq!(once, twice);
    }
}
