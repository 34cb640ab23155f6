//! `/openapi.json`: every route of the router described, each with the
//! security its access in `ROUTES` asks, valid OpenAPI 3.1 (checked by
//! openapi-spec-validator, pinned in tests/python/requirements.txt).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cfgd_server::openapi::{self, BEARER, TICKET};
use cfgd_server::{app, Access, AppState, Settings, ROUTES};
use serde_json::Value;
use tower::ServiceExt;

use crate::common;

#[test]
fn the_document_describes_every_route_the_router_serves_and_no_other() {
    let described = openapi::operations(&openapi::document());
    let served = openapi::routes();
    let missing: Vec<_> = served.iter().filter(|r| !described.contains(r)).collect();
    let extra: Vec<_> = described.iter().filter(|r| !served.contains(r)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes without a description: {missing:?}; descriptions without a route: {extra:?}"
    );
}

#[test]
fn each_operation_asks_the_security_its_route_table_entry_does() {
    let mut doc = openapi::document();
    for route in ROUTES {
        let item = doc
            .paths
            .paths
            .get_mut(&openapi::openapi_path(route.path))
            .unwrap_or_else(|| panic!("{} not described", route.path));
        let operation = openapi::operation_mut(item, route.method).unwrap();
        let security = serde_json::to_value(&operation.security).unwrap();
        let expected = match route.access {
            Access::Open => serde_json::json!([]),
            Access::Token => serde_json::json!([{ BEARER: [] }]),
            Access::Ticket => serde_json::json!([{ TICKET: [] }]),
            Access::Namespace(scope) => serde_json::json!([{ BEARER: [scope.as_str()] }]),
        };
        assert_eq!(security, expected, "{} {}", route.method, route.path);
        let answers = &operation.responses.responses;
        if route.access != Access::Open {
            assert!(answers.contains_key("401") || answers.contains_key("403"));
        }
    }
}

async fn served() -> (StatusCode, Option<String>, Value) {
    let router = app(AppState::new(Settings::default()));
    let request = Request::get("/openapi.json").body(Body::empty()).unwrap();
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, kind, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn openapi_json_is_served_without_a_token_and_validates_as_openapi_3_1() {
    let (status, kind, doc) = served().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind.as_deref(), Some("application/json"));
    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1."), "openapi: {version}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let python = common::python();
    let out = std::process::Command::new(&python)
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openapi-spec-validator: {said}");
    assert!(said.contains("OK"), "openapi-spec-validator: {said}");
}

#[tokio::test]
async fn the_streams_are_described_as_event_streams() {
    let (_, _, doc) = served().await;
    let mut streams = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if path.ends_with("/events") || path.ends_with("/watch") {
            let content = &item["get"]["responses"]["200"]["content"];
            assert!(
                content.get("text/event-stream").is_some(),
                "{path}: {content}"
            );
            streams += 1;
        }
    }
    assert!(streams >= 2, "{streams} streams described");
}
