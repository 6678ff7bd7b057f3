//! A query string every URI of a playlist must carry.
//!
//! The HTTP edge (`api`) decides who may fetch a stream's media; for a
//! stream that is not public it admits a viewer once and hands the
//! answer a [`UriQuery`] (a media token, `hls_token=…`) as a request
//! extension. Every playlist the transcoder answers with — live
//! multivariant and media playlists, blocking reloads, VOD playlists —
//! then lists its URIs with that query appended, so the player's next
//! requests carry it without knowing about it (hls.js and native players
//! resolve relative URIs and drop the playlist's own query). Public
//! streams get no extension and their playlists are unchanged.

use std::sync::Arc;

/// The query (without `?`) to append to each URI of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriQuery(pub Arc<str>);

impl UriQuery {
    pub fn new(query: &str) -> UriQuery {
        UriQuery(query.into())
    }

    /// `uri` with the query appended (`?` or `&`).
    pub fn apply(&self, uri: &str) -> String {
        let sep = if uri.contains('?') { '&' } else { '?' };
        format!("{uri}{sep}{}", self.0)
    }

    /// `playlist` with the query appended to every URI line and every
    /// `URI="…"` attribute (`EXT-X-MAP`, `EXT-X-PART`, `EXT-X-PRELOAD-HINT`,
    /// `EXT-X-RENDITION-REPORT`, `EXT-X-MEDIA`, `EXT-X-KEY`…). Other tags and
    /// attribute values (an `X-PAYLOAD`, say) are left as they are.
    pub fn sign_playlist(&self, playlist: &str) -> String {
        let mut out = String::with_capacity(playlist.len() + 64);
        for line in playlist.split_inclusive('\n') {
            let (body, end) = match line.strip_suffix('\n') {
                Some(b) => match b.strip_suffix('\r') {
                    Some(b) => (b, "\r\n"),
                    None => (b, "\n"),
                },
                None => (line, ""),
            };
            if body.starts_with('#') {
                self.sign_tag(body, &mut out);
            } else if body.trim().is_empty() {
                out.push_str(body);
            } else {
                out.push_str(&self.apply(body.trim()));
            }
            out.push_str(end);
        }
        out
    }

    fn sign_tag(&self, tag: &str, out: &mut String) {
        let mut rest = tag;
        // Attribute names start after the tag's ':' or a ','; values in
        // quotes hold no '"' (RFC 8216 4.2), so the first quote after
        // `URI="` ends the value.
        while let Some(at) = find_uri_attr(rest) {
            let value_start = at + "URI=\"".len();
            let Some(len) = rest[value_start..].find('"') else {
                break;
            };
            out.push_str(&rest[..value_start]);
            out.push_str(&self.apply(&rest[value_start..value_start + len]));
            rest = &rest[value_start + len..];
        }
        out.push_str(rest);
    }
}

/// The offset of the next `URI="` that begins an attribute (after `:` or
/// `,`) outside a quoted value.
fn find_uri_attr(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut quoted = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b':' | b',' if !quoted && bytes[i + 1..].starts_with(b"URI=\"") => {
                return Some(i + 1);
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_uri_of_a_media_playlist_carries_the_query() {
        let q = UriQuery::new("hls_token=600.sig");
        let playlist = "#EXTM3U\n\
#EXT-X-MAP:URI=\"init.mp4\"\n\
#EXT-X-PROGRAM-DATE-TIME:2026-12-07T12:00:00.000Z\n\
#EXT-X-DATERANGE:ID=\"a\",CLASS=\"c\",X-PAYLOAD=\"eyJVUkk9IjoxfQ==\",X-NOTE=\"x,URI=\\\"\"\n\
#EXTINF:2.000,\n\
seg0.m4s\n\
#EXT-X-PART:DURATION=0.333,URI=\"part1.0.m4s\",INDEPENDENT=YES\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part1.1.m4s\"\n\
#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN=1,LAST-PART=0\n\
\n\
../video/index.m3u8?x=1\r\n";
        let signed = q.sign_playlist(playlist);
        assert_eq!(
            signed,
            "#EXTM3U\n\
#EXT-X-MAP:URI=\"init.mp4?hls_token=600.sig\"\n\
#EXT-X-PROGRAM-DATE-TIME:2026-12-07T12:00:00.000Z\n\
#EXT-X-DATERANGE:ID=\"a\",CLASS=\"c\",X-PAYLOAD=\"eyJVUkk9IjoxfQ==\",X-NOTE=\"x,URI=\\\"\"\n\
#EXTINF:2.000,\n\
seg0.m4s?hls_token=600.sig\n\
#EXT-X-PART:DURATION=0.333,URI=\"part1.0.m4s?hls_token=600.sig\",INDEPENDENT=YES\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part1.1.m4s?hls_token=600.sig\"\n\
#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8?hls_token=600.sig\",LAST-MSN=1,LAST-PART=0\n\
\n\
../video/index.m3u8?x=1&hls_token=600.sig\r\n"
        );
    }

    #[test]
    fn a_multivariant_playlist_signs_variants_and_media() {
        let q = UriQuery::new("t=1");
        let signed = q.sign_playlist(
            "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",URI=\"r/audio/index.m3u8\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=\"avc1.42e01f,mp4a.40.2\"\nr/video/index.m3u8",
        );
        assert_eq!(
            signed,
            "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",URI=\"r/audio/index.m3u8?t=1\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=\"avc1.42e01f,mp4a.40.2\"\nr/video/index.m3u8?t=1"
        );
    }

    #[test]
    fn an_unterminated_uri_attribute_is_left_alone() {
        let q = UriQuery::new("t=1");
        assert_eq!(
            q.sign_playlist("#EXT-X-MAP:URI=\"init"),
            "#EXT-X-MAP:URI=\"init"
        );
    }
}
