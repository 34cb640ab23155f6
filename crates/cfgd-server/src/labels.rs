//! A client's labels from `X-Cfgd-Labels`, which choose the overlays its
//! reads see (REST, lists, event streams).

use axum::http::HeaderMap;

use super::error::ApiError;

/// The labels of `X-Cfgd-Labels: region=eu,canary=true`; none without it.
pub(crate) fn labels(headers: &HeaderMap) -> Result<cfgd::overlays::Labels, ApiError> {
    let Some(value) = headers.get("x-cfgd-labels") else {
        return Ok(Default::default());
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("X-Cfgd-Labels is not text"))?;
    text.parse().map_err(|e: cfgd::overlays::OverlayError| {
        ApiError::bad_request(format!("X-Cfgd-Labels: {e}"))
    })
}

/// `client`, or with `X-Cfgd-Labels` a client of those labels for this
/// request (on the server's one watch), which sees the overlays they
/// select: what labelled lists and event streams read through.
pub(crate) async fn labelled(
    client: cfgd::Client,
    ns: &str,
    headers: &HeaderMap,
) -> Result<cfgd::Client, ApiError> {
    let labels = labels(headers)?;
    if labels.is_empty() {
        return Ok(client);
    }
    Ok(cfgd::Client::builder()
        .share(&client)
        .namespace(ns)
        .labels(labels)
        .connect()
        .await?)
}
