//! Every route of the router, in process (`Router::oneshot`, no etcd): one
//! without a token gets 401, one whose token lacks the route's scope 403.
//! The routes come from `cfgd_server::ROUTES`, the table the router is
//! built from, so a route added later is walked too.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cfgd_server::{app, Access, AppState, Scope, Settings, ROUTES};
use tower::ServiceExt;

const SETTINGS: &str = r#"
[[tokens]]
name = "reader"
secret = "reader-secret"
scopes = { app = "read" }

[[tokens]]
name = "writer"
secret = "writer-secret"
scopes = { app = "write" }

[[tokens]]
name = "elsewhere"
secret = "elsewhere-secret"
scopes = { other = "admin" }
"#;

/// A request path for `path`, its captures filled in, namespace `app`.
fn concrete(path: &str) -> String {
    let filled = path
        .replace("{ns}", "app")
        .replace("{*name}", "db/main")
        .replace("{*pattern}", "db.*")
        .replace("{id}", "r1")
        .replace("{step}", "approve")
        .replace("{overlay}", "canary")
        .replace("{name}", "beta")
        .replace("{key}", "beta")
        .replace("{file}", "app.js");
    assert!(
        !filled.contains('{'),
        "{path}: a capture the walk cannot fill"
    );
    // The one query a route refuses to do without, whatever the caller.
    if path.ends_with("/diff") {
        filled + "?against=app"
    } else if path.contains("/diff/") {
        filled + "?from=1"
    } else if path.starts_with("/ofrep/v1/events") {
        filled + "?namespace=app&ticket=not-a-ticket"
    } else {
        filled
    }
}

/// The status `method path` gets with `token` (none when `None`).
async fn status(
    router: &axum::Router,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> StatusCode {
    let mut request = Request::builder()
        .method(method)
        .uri(concrete(path))
        .header("x-cfgd-namespace", "app")
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Body::from("{}")).unwrap();
    router.clone().oneshot(request).await.unwrap().status()
}

/// A token of the settings that lacks `scope` in namespace `app`.
fn lacking(scope: Scope) -> &'static str {
    match scope {
        Scope::Read => "elsewhere-secret",
        Scope::Write | Scope::Secrets => "reader-secret",
        Scope::Admin => "writer-secret",
    }
}

#[tokio::test]
async fn every_route_refuses_a_missing_token_with_401_and_a_small_scope_with_403() {
    let settings: Settings = toml::from_str(SETTINGS).unwrap();
    settings.validate().unwrap();
    let router = app(AppState::new(settings));
    let mut walked = 0;
    for route in ROUTES {
        let (method, path) = (route.method, route.path);
        let anonymous = status(&router, method, path, None).await;
        match route.access {
            Access::Open => assert_ne!(anonymous, StatusCode::UNAUTHORIZED, "{method} {path}"),
            Access::Token => {
                assert_eq!(anonymous, StatusCode::UNAUTHORIZED, "{method} {path}");
                // Past auth (it may then need etcd, which this test has not).
                let known = status(&router, method, path, Some("reader-secret")).await;
                assert!(
                    ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&known),
                    "{method} {path} with a token: {known}"
                );
            }
            Access::Ticket => assert_eq!(anonymous, StatusCode::FORBIDDEN, "{method} {path}"),
            Access::Namespace(scope) => {
                assert_eq!(
                    anonymous,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} without a token"
                );
                let small = status(&router, method, path, Some(lacking(scope))).await;
                assert_eq!(
                    small,
                    StatusCode::FORBIDDEN,
                    "{method} {path} without {scope:?}"
                );
                let unknown = status(&router, method, path, Some("no-such-token")).await;
                assert_eq!(
                    unknown,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} with a bad token"
                );
            }
        }
        walked += 1;
    }
    assert_eq!(walked, ROUTES.len());
    assert!(walked >= 40, "only {walked} routes");
}
