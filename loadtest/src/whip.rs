//! WHIP/WHEP signalling over HTTP: POST an SDP offer, get the answer and the
//! session resource; DELETE it at the end.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;

pub fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .context("building HTTP client")
}

/// A created WHIP/WHEP session.
pub struct Session {
    pub answer_sdp: String,
    /// Absolute URL of the session resource (for DELETE).
    pub url: Option<String>,
}

/// POSTs `offer` to `url` (relaycast's `…/whip/NAME` or `…/whep/NAME`, or
/// any server's WHIP/WHEP endpoint); requires 201.
pub async fn post_offer(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    offer: String,
) -> Result<Session> {
    let mut request = http
        .post(url)
        .header(CONTENT_TYPE, "application/sdp")
        .body(offer);
    if let Some(token) = bearer {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| resolve(url, l));
    let body = response
        .text()
        .await
        .with_context(|| format!("reading the answer to POST {url}"))?;
    if status != StatusCode::CREATED {
        let body: String = body.chars().take(200).collect();
        bail!("POST {url}: {status} {body}");
    }
    Ok(Session {
        answer_sdp: body,
        url: location,
    })
}

/// Ends a session; errors are reported but not fatal to a run.
pub async fn delete(http: &reqwest::Client, url: &str) -> Result<()> {
    let status = http
        .delete(url)
        .send()
        .await
        .with_context(|| format!("DELETE {url}"))?
        .status();
    if !status.is_success() {
        bail!("DELETE {url}: {status}");
    }
    Ok(())
}

/// A `Location` is a URI reference relative to the URL that was POSTed to
/// (RFC 9725 §4.1 and RFC 3986 §5): `/whep/NAME/ID` from relaycast,
/// `/rtc/v1/whip/?action=delete&…` from SRS. `None` when it does not parse.
fn resolve(request: &str, location: &str) -> Option<String> {
    let base = reqwest::Url::parse(request).ok()?;
    base.join(location).ok().map(String::from)
}

/// `scheme://host:port` of a URL: where a server's `/metrics` is looked for
/// when only its WHIP/WHEP endpoints were given.
pub fn origin(url: &str) -> Result<String> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("invalid URL {url:?}"))?;
    let origin = parsed.origin();
    if !origin.is_tuple() {
        bail!("{url:?} has no host");
    }
    Ok(origin.ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_posted_url() {
        let relaycast = "http://127.0.0.1:8080/whep/load";
        assert_eq!(
            resolve(relaycast, "/whep/load/abc").as_deref(),
            Some("http://127.0.0.1:8080/whep/load/abc")
        );
        let srs = "http://127.0.0.1:11985/rtc/v1/whip/?app=live&stream=load";
        assert_eq!(
            resolve(
                srs,
                "/rtc/v1/whip/?action=delete&token=t&app=live&stream=load"
            )
            .as_deref(),
            Some("http://127.0.0.1:11985/rtc/v1/whip/?action=delete&token=t&app=live&stream=load")
        );
        assert_eq!(
            resolve(relaycast, "https://other.example/s/1").as_deref(),
            Some("https://other.example/s/1")
        );
        assert_eq!(resolve("not a url", "/x"), None);
    }

    #[test]
    fn origin_keeps_scheme_host_and_port() {
        assert_eq!(
            origin("http://127.0.0.1:11985/rtc/v1/whep/?app=live&stream=s").ok(),
            Some("http://127.0.0.1:11985".to_string())
        );
        assert!(origin("nonsense").is_err());
    }
}
