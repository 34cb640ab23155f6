//! A user service (axum) whose behaviour follows cfgd live:
//!
//! - `POST /users` stores a user (in memory);
//! - `GET /users/{id}` answers in the new or old profile format, by the
//!   `new-profile-page` flag (per user, so it can be rolled out);
//! - `GET /users/{id}/orders` asks the order service through a circuit
//!   breaker whose threshold and timeouts come from the config value
//!   `user-service.circuit`.
//!
//! New breaker settings also close an open breaker the moment they land
//! (`Client::on_change`), so an operator who raises the threshold need not
//! wait out `open_ms`.
//!
//! Change either with cfgctl and the next request behaves differently, no
//! restart:
//!
//! ```sh
//! cfgctl -n demo set user-service.circuit '{"failure_threshold": 1, "timeout_ms": 200, "open_ms": 10000}'
//! cfgctl -n demo flag rollout new-profile-page --variant on=100,off=0
//! ```
//!
//! Run: `CFGD_ENDPOINTS=http://127.0.0.1:2379 ORDER_SERVICE=127.0.0.1:3000 \
//!       cargo run -p cfgd-server --example user_service`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The breaker's settings, as stored in cfgd.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct CircuitSettings {
    failure_threshold: u32,
    timeout_ms: u64,
    open_ms: u64,
}

impl Default for CircuitSettings {
    fn default() -> Self {
        CircuitSettings {
            failure_threshold: 5,
            timeout_ms: 1000,
            open_ms: 5000,
        }
    }
}

#[derive(Default)]
struct Breaker {
    failures: u32,
    /// When it opened; how long it stays open is read live, so a new
    /// `open_ms` applies to a circuit that is already open.
    opened_at: Option<Instant>,
}

#[derive(Clone, Serialize, Deserialize)]
struct User {
    id: String,
    name: String,
}

struct AppState {
    circuit: cfgd::Live<CircuitSettings>,
    flags: cfgd::Flags,
    breaker: Mutex<Breaker>,
    users: Mutex<HashMap<String, User>>,
    order_service: String,
}

async fn create_user(
    State(state): State<Arc<AppState>>,
    Json(user): Json<User>,
) -> (StatusCode, Json<User>) {
    state
        .users
        .lock()
        .unwrap()
        .insert(user.id.clone(), user.clone());
    (StatusCode::CREATED, Json(user))
}

async fn get_user(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, StatusCode> {
    let user = state
        .users
        .lock()
        .unwrap()
        .get(&id)
        .cloned()
        .ok_or(StatusCode::NOT_FOUND)?;
    let new_page = state
        .flags
        .bool("new-profile-page", false, &json!({"targetingKey": id}));
    Ok(Json(if new_page {
        json!({"profile": {"id": user.id, "displayName": user.name}, "layout": "new"})
    } else {
        json!({"id": user.id, "name": user.name, "layout": "old"})
    }))
}

/// One GET to the order service, within `timeout`.
async fn fetch_orders(address: &str, user: &str, timeout: Duration) -> Result<Value, String> {
    let call = async {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        let request = format!("GET /?user={user} HTTP/1.0\r\nHost: {address}\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or("malformed response")?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            return Err(head.lines().next().unwrap_or_default().to_owned());
        }
        serde_json::from_str(body).map_err(|e| e.to_string())
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

async fn user_orders(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> (StatusCode, Json<Value>) {
    // Read live: a change in cfgd applies to the very next request.
    let settings = state.circuit.get();
    {
        let mut breaker = state.breaker.lock().unwrap();
        match breaker.opened_at {
            Some(at) if at.elapsed() < Duration::from_millis(settings.open_ms) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(
                        json!({"error": "order service circuit open", "failures": breaker.failures}),
                    ),
                )
            }
            Some(_) => breaker.opened_at = None, // half-open: try once
            None => {}
        }
    }
    let result = fetch_orders(
        &state.order_service,
        &id,
        Duration::from_millis(settings.timeout_ms),
    )
    .await;
    let mut breaker = state.breaker.lock().unwrap();
    match result {
        Ok(orders) => {
            breaker.failures = 0;
            (StatusCode::OK, Json(json!({"user": id, "orders": orders})))
        }
        Err(reason) => {
            breaker.failures += 1;
            if breaker.failures >= settings.failure_threshold {
                breaker.opened_at = Some(Instant::now());
            }
            (
                StatusCode::BAD_GATEWAY,
                Json(
                    json!({"error": format!("order service: {reason}"), "failures": breaker.failures}),
                ),
            )
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoints = std::env::var("CFGD_ENDPOINTS").unwrap_or("http://127.0.0.1:2379".into());
    let namespace = std::env::var("CFGD_NAMESPACE").unwrap_or("demo".into());
    let client = cfgd::Client::builder()
        .endpoints(endpoints.split(','))
        .namespace(namespace)
        .connect()
        .await?;
    let state = Arc::new(AppState {
        circuit: client.watch("user-service.circuit", CircuitSettings::default())?,
        flags: client.flags()?,
        breaker: Mutex::default(),
        users: Mutex::default(),
        order_service: std::env::var("ORDER_SERVICE").unwrap_or("127.0.0.1:3000".into()),
    });
    // Called on the watch's task as each change lands: quick, never blocks.
    let breaker_state = state.clone();
    let _reset_on_change = client.on_change("user-service.circuit", move |change| {
        *breaker_state.breaker.lock().unwrap() = Breaker::default();
        println!(
            "circuit settings changed at revision {}: breaker closed",
            change.revision()
        );
    })?;
    let app = Router::new()
        .route("/users", post(create_user))
        .route("/users/{id}", get(get_user))
        .route("/users/{id}/orders", get(user_orders))
        .with_state(state);
    let listener =
        tokio::net::TcpListener::bind(std::env::var("LISTEN").unwrap_or("127.0.0.1:3001".into()))
            .await?;
    println!("user service on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
