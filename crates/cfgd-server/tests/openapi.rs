//! `/openapi.json`: every route of the router described, each with the
//! security its access in `ROUTES` asks, valid OpenAPI 3.1 (checked by
//! openapi-spec-validator, pinned in tests/python/requirements.txt).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cfgd_server::openapi::{self, BEARER, SESSION, TICKET};
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
            // A bearer credential, or the console's session cookie.
            Access::Token => serde_json::json!([{ BEARER: [] }, { SESSION: [] }]),
            Access::Ticket => serde_json::json!([{ TICKET: [] }]),
            Access::Namespace(scope) => {
                serde_json::json!([{ BEARER: [scope.as_str()] }, { SESSION: [scope.as_str()] }])
            }
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

/// Which parameters a caller must give: every path capture, and of the
/// rest only these. A `value_type` in a handler's `#[param]` makes utoipa
/// call a parameter required unless told otherwise; this catches that.
#[tokio::test]
async fn only_path_captures_and_a_few_queries_are_required() {
    let (_, _, doc) = served().await;
    let mut required = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for p in operation["parameters"].as_array().into_iter().flatten() {
                let place = p["in"].as_str().unwrap();
                let is_required = p["required"].as_bool().unwrap_or(false);
                if place == "path" {
                    assert!(is_required, "{method} {path}: {p}");
                } else if is_required {
                    required.push(format!("{method} {path} {}", p["name"].as_str().unwrap()));
                }
            }
        }
    }
    required.sort();
    assert_eq!(
        required,
        [
            "get /ofrep/v1/events namespace",
            "get /v1/namespaces/{ns}/diff against",
            "get /v1/namespaces/{ns}/diff/{name} from",
            "post /v1/namespaces/{ns}/webhooks/{id}/replay from",
        ]
    );
}

/// The docs' client example: `openapi-python-client` generates a package
/// from the served document, and examples/python/client.py uses it against
/// a live cfgd on real etcd (writes, a stale write's 412, a flag evaluated
/// through OFREP).
#[test]
fn a_python_client_generated_from_the_document_works_against_a_live_cfgd() {
    let python = common::python();
    let generator = python.with_file_name("openapi-python-client");
    let etcd = common::EtcdCluster::single();
    let server = crate::harness::start(&etcd);
    let dir = tempfile::tempdir().unwrap();
    let document = crate::harness::http(&server, "GET", "/openapi.json", &[], "");
    assert_eq!(document.status, 200);
    std::fs::write(dir.path().join("openapi.json"), &document.body).unwrap();
    let out = std::process::Command::new(&generator)
        .args(["generate", "--path", "openapi.json", "--meta", "none"])
        .args(["--output-path", "cfgd_client"])
        .current_dir(dir.path())
        // Its formatter, ruff, is in the same virtualenv.
        .env("PATH", path_with(python.parent().unwrap()))
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", generator.display()));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openapi-python-client: {said}");
    let out = std::process::Command::new(&python)
        .arg(common::root().join("examples/python/client.py"))
        .env("PYTHONPATH", dir.path())
        .env("CFGD_URL", format!("http://{}", server.address))
        .env("CFGD_TOKEN", "ops-secret")
        .env("CFGD_NAMESPACE", "pyclient")
        .output()
        .unwrap();
    let printed = common::stdout_of("examples/python/client.py", out);
    assert!(
        printed.contains("a stale write: 412 conflict")
            && printed.contains("new-checkout for a pro user: on (TARGETING_MATCH)"),
        "{printed}"
    );
}

fn path_with(dir: &std::path::Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_owned()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}
