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

/// POSTs `offer` to `url` (`…/whip/NAME` or `…/whep/NAME`); requires 201.
pub async fn post_offer(
    http: &reqwest::Client,
    base: &str,
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
        .map(|l| resolve(base, l));
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

fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        format!("{base}/{location}")
    }
}
