//! Run with: `CFGD_ENDPOINTS=http://127.0.0.1:2379 cargo run --example openfeature`
//!
//! A service written against the standard OpenFeature API, with cfgd as its
//! provider: the flag lives in etcd, and a change to it applies to the next
//! evaluation. The example stores `new-checkout` itself (a 25% rollout),
//! evaluates it for a few users, then turns it off and shows the change.

use cfgd::openfeature::CfgdProvider;
use open_feature::{EvaluationContext, OpenFeature};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoints = std::env::var("CFGD_ENDPOINTS").unwrap_or("http://127.0.0.1:2379".into());
    let namespace = std::env::var("CFGD_NAMESPACE").unwrap_or("demo".into());
    let client = cfgd::Client::builder()
        .endpoints(endpoints.split(','))
        .namespace(namespace)
        .connect()
        .await?;
    client
        .set_flag(
            "new-checkout",
            &json!({"state": "ENABLED", "variants": {"on": true, "off": false},
                    "defaultVariant": "off", "targeting": {"fractional": [["on", 25], ["off", 75]]}}),
        )
        .await?;

    let provider = CfgdProvider::new(client.flags()?);
    let mut events = provider.events();
    let mut api = OpenFeature::singleton_mut().await;
    api.set_provider(provider).await;
    let flags = api.create_client();
    drop(api);

    for user in ["alice", "bob", "carol", "dave"] {
        let context = EvaluationContext::default().with_targeting_key(user);
        let details = flags
            .get_bool_details("new-checkout", Some(&context), None)
            .await
            .map_err(|e| format!("{:?}", e))?;
        println!(
            "new-checkout for {user}: {} (variant {:?}, reason {:?})",
            details.value, details.variant, details.reason
        );
    }

    client
        .set_flag(
            "new-checkout",
            &json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}),
        )
        .await?;
    let event = events.recv().await?;
    println!("configuration changed: {:?}", event.flags_changed);
    let context = EvaluationContext::default().with_targeting_key("alice");
    // As services do: the default when anything is wrong.
    let on = flags
        .get_bool_value("new-checkout", Some(&context), None)
        .await
        .unwrap_or(false);
    println!("new-checkout for alice after the change: {on}");
    Ok(())
}
