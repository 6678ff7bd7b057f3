//! Why an ingest connection ended, whatever its protocol: the causes RTMP
//! and SRT share (refusal, codec, bad media, stall, takeover, socket) and
//! their `relaycast_ingest_drops_total` reason labels.

use std::time::Duration;

use crate::media_in::MediaError;

/// Why the server closed (or refused) a publisher's connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// Refused: wrong application, playing, bad stream id, wrong or missing
    /// key, busy stream, throttled address.
    #[error("{what}")]
    Refused { reason: &'static str, what: String },
    /// Media the SFU cannot carry.
    #[error("{0}")]
    Codec(String),
    /// Media that does not parse or decode.
    #[error("bad media: {0}")]
    Media(String),
    /// Nothing received for the stall timeout.
    #[error("nothing received for {0:?}")]
    Stalled(Duration),
    /// A newer publisher with the same credential took the stream.
    #[error("replaced by a newer publisher of the same credential")]
    Replaced,
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

impl IngestError {
    /// A refusal with its `reason` label.
    pub fn refused(reason: &'static str, what: impl Into<String>) -> IngestError {
        IngestError::Refused {
            reason,
            what: what.into(),
        }
    }

    /// The `reason` label of `relaycast_ingest_drops_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::Refused { reason, .. } => reason,
            IngestError::Codec(_) => "codec",
            IngestError::Media(_) => "media",
            IngestError::Stalled(_) => "stalled",
            IngestError::Replaced => "replaced",
            IngestError::Io(_) => "io",
        }
    }
}

impl From<MediaError> for IngestError {
    fn from(e: MediaError) -> IngestError {
        match e {
            MediaError::Replaced => IngestError::Replaced,
            e => IngestError::Media(e.to_string()),
        }
    }
}
