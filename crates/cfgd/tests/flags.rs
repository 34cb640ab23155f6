//! Flags stored in etcd: strict checks on write, live evaluation, rollouts.

use std::collections::HashMap;
use std::time::Duration;

use cfgd::flags::{ErrorCode, Reason};
use cfgd::{Client, Error};
use serde_json::{json, Value};

use crate::common::{self, EtcdCluster};

async fn client(etcd: &EtcdCluster, ns: &str) -> Client {
    common::logs();
    Client::builder()
        .endpoints(etcd.endpoints())
        .namespace(ns)
        .connect()
        .await
        .unwrap()
}

fn on_off(default: &str) -> Value {
    json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": default})
}

#[tokio::test]
async fn invalid_definitions_are_refused_and_nothing_is_written() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("badflags");
    let client = client(&etcd, &ns).await;
    let mut evaluators = serde_json::Map::new();
    evaluators.insert("beta".into(), json!({"in": [{"var": "email"}, ["a@x.io"]]}));
    client.set_evaluators(&evaluators).await.unwrap();
    let before = etcd.revision().await;

    let cases: Vec<(Value, &str)> = vec![
        (
            on_off("maybe"),
            "defaultVariant \"maybe\" is not one of the variants",
        ),
        (
            json!({"state": "ENABLED", "variants": {"a": "x", "b": 2}, "defaultVariant": "a"}),
            "variants mix types",
        ),
        (
            json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                   "targeting": {"if": [{"regex_match": [{"var": "email"}, ".*"]}, "on", "off"]}}),
            "unknown operator \"regex_match\"",
        ),
        (
            json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                   "targeting": {"if": [{"$ref": "gamma"}, "on", "off"]}}),
            "evaluator \"gamma\", which does not exist",
        ),
        (
            json!({"state": "ON", "variants": {"on": true}}),
            "state must be",
        ),
        (json!({"state": "ENABLED"}), "variants is missing"),
        (
            json!({"state": "ENABLED", "variants": {"on": true}, "extra": 1}),
            "unknown field \"extra\"",
        ),
        // Found by schemathesis through a release: literals are JSON Logic
        // too, but flagd's schema asks for a rule object.
        (
            json!({"state": "ENABLED", "variants": {"on": true}, "targeting": "on"}),
            "targeting must be a JSON Logic rule (an object), not string",
        ),
        (
            json!({"state": "ENABLED", "variants": {"on": true}, "targeting": [null, null]}),
            "targeting must be a JSON Logic rule (an object), not array",
        ),
    ];
    for (definition, needle) in cases {
        let err = client
            .set_flag("new-checkout", &definition)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidFlag { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains(needle), "{needle:?} in {message}");
        assert!(message.contains("flags/new-checkout"), "{message}");
        assert!(!message.contains('\n'), "one line: {message}");
    }
    let err = client
        .set_flag_json("new-checkout", r#"{"state": "ENABLED", "variants": "#)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidJson { .. }), "{err}");

    // Removing an evaluator a stored flag uses is refused too.
    let uses_beta = json!({"state": "ENABLED", "variants": {"on": true, "off": false},
        "defaultVariant": "off", "targeting": {"if": [{"$ref": "beta"}, "on", "off"]}});
    client.set_flag("beta-users", &uses_beta).await.unwrap();
    let settled = etcd.revision().await;
    let err = client
        .set_evaluators(&serde_json::Map::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"beta\""), "{err}");
    assert_eq!(etcd.revision().await, settled, "nothing was written");
    assert_eq!(settled, before + 1, "only the valid flag was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_edit_reaches_running_evaluations() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("liveflags");
    let service = client(&etcd, &ns).await;
    let flags = service.flags().unwrap();
    let ctx = json!({"targetingKey": "user-1"});
    assert!(!flags.bool("dark-mode", false, &ctx));
    let missing = flags.details("dark-mode", false, &ctx);
    assert_eq!(missing.error_code, Some(ErrorCode::FlagNotFound));

    let operator = client(&etcd, &ns).await;
    let changed = flags.changed();
    operator.set_flag("dark-mode", &on_off("on")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), changed)
        .await
        .expect("a change event");
    let details = flags.details("dark-mode", false, &ctx);
    assert!(details.value);
    assert_eq!(details.variant.as_deref(), Some("on"));
    assert_eq!(details.reason, Reason::Static);

    let entry = operator.get_flag("dark-mode").await.unwrap().unwrap();
    operator
        .set_flag_if("dark-mode", &on_off("off"), entry.revision)
        .await
        .unwrap();
    // A second edit from the same stale revision is a conflict.
    let err = operator
        .set_flag_if("dark-mode", &on_off("on"), entry.revision)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    common::eventually(Duration::from_secs(20), || async {
        !flags.bool("dark-mode", true, &ctx)
    })
    .await;
    // The writer reads its own write at once.
    assert!(!operator.flags().unwrap().bool("dark-mode", true, &ctx));
}

#[tokio::test]
async fn a_25_75_rollout_splits_100k_users_within_a_point() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("rollout");
    let client = client(&etcd, &ns).await;
    client
        .set_flag(
            "new-checkout",
            &json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                    "targeting": {"fractional": [["on", 25], ["off", 75]]}}),
        )
        .await
        .unwrap();
    let flags = client.flags().unwrap();
    let mut seen = HashMap::new();
    let mut on = 0u32;
    for i in 0..100_000 {
        let ctx = json!({"targetingKey": format!("user-{i}")});
        let details = flags.details("new-checkout", false, &ctx);
        assert_eq!(details.reason, Reason::TargetingMatch);
        on += u32::from(details.value);
        seen.insert(i, details.value);
    }
    let share = f64::from(on) / 1000.0;
    assert!((24.0..=26.0).contains(&share), "{share}% on");
    for i in (0..100_000).step_by(997) {
        let ctx = json!({"targetingKey": format!("user-{i}")});
        assert_eq!(
            flags.bool("new-checkout", false, &ctx),
            seen[&i],
            "user-{i} is stable"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openfeature_provider_reports_edits_made_elsewhere() {
    use cfgd::openfeature::CfgdProvider;
    use open_feature::provider::FeatureProvider;
    use open_feature::{EvaluationContext, EvaluationReason};

    let etcd = EtcdCluster::single();
    let ns = common::namespace("ofprovider");
    let service = client(&etcd, &ns).await;
    let provider = CfgdProvider::new(service.flags().unwrap());
    let mut events = provider.events();
    let ctx = EvaluationContext::default().with_targeting_key("user-3");
    let missing = provider.resolve_bool_value("beta", &ctx).await.unwrap_err();
    assert_eq!(
        missing.code,
        open_feature::EvaluationErrorCode::FlagNotFound
    );

    let operator = client(&etcd, &ns).await;
    operator.set_flag("beta", &on_off("on")).await.unwrap();
    operator.set_flag("other", &on_off("off")).await.unwrap();
    let mut changed = Vec::new();
    while changed.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .expect("a configuration-changed event")
            .unwrap();
        changed.extend(event.flags_changed);
    }
    changed.sort();
    assert_eq!(changed, ["beta", "other"]);
    let resolved = provider.resolve_bool_value("beta", &ctx).await.unwrap();
    assert!(resolved.value);
    assert_eq!(resolved.variant.as_deref(), Some("on"));
    assert_eq!(resolved.reason, Some(EvaluationReason::Static));

    // Disabled: an error result, which the SDK turns into the caller's default.
    operator
        .set_flag("beta", &json!({"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}))
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("a configuration-changed event")
        .unwrap();
    assert_eq!(event.flags_changed, ["beta"]);
    assert!(provider.resolve_bool_value("beta", &ctx).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_disable_and_rollout_edit_the_stored_flag() {
    let etcd = EtcdCluster::single();
    let ns = common::namespace("flagops");
    let client = client(&etcd, &ns).await;
    let flags = client.flags().unwrap();
    let mut definition = on_off("on");
    definition["metadata"] = json!({"team": "checkout"});
    client.set_flag("beta", &definition).await.unwrap();
    let stored = |client: Client| async move { client.get_flag("beta").await.unwrap().unwrap() };

    let revision = client.disable_flag("beta").await.unwrap();
    let now = stored(client.clone()).await;
    assert_eq!(now.revision, revision);
    assert_eq!(now.value["state"], "DISABLED");
    assert_eq!(
        now.value["metadata"], definition["metadata"],
        "the rest is kept"
    );
    let details = flags.details("beta", false, &json!({}));
    assert_eq!((details.value, details.reason), (false, Reason::Disabled));
    client.enable_flag("beta").await.unwrap();
    assert_eq!(stored(client.clone()).await.value["state"], "ENABLED");
    assert!(flags.bool("beta", false, &json!({})));

    // A 30/70 rollout is stored as flagd's fractional, and splits users so.
    let rollout = cfgd::Rollout::new().variant("on", 30).variant("off", 70);
    client.set_rollout("beta", &rollout).await.unwrap();
    assert_eq!(
        stored(client.clone()).await.value["targeting"],
        json!({"fractional": [["on", 30], ["off", 70]]})
    );
    let on = (0..1000)
        .filter(|i| flags.bool("beta", false, &json!({"targetingKey": format!("user-{i}")})))
        .count();
    assert!((250..=350).contains(&on), "{on} of 1000 users on at 30%");

    // Refused before anything is written.
    let before = etcd.revision().await;
    for (bad, says) in [
        (cfgd::Rollout::new(), "at least one variant"),
        (cfgd::Rollout::new().variant("on", 0), "sum to 0"),
        (
            cfgd::Rollout::new().variant("on", 1).variant("on", 1),
            "twice",
        ),
        (
            cfgd::Rollout::new().variant("maybe", 100),
            "does not have (it has on, off)",
        ),
    ] {
        let error = client.set_rollout("beta", &bad).await.unwrap_err();
        assert!(matches!(error, Error::InvalidFlag { .. }), "{error}");
        assert!(error.to_string().contains(says), "{error}");
    }
    let missing = client.enable_flag("nope").await.unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }), "{missing}");
    assert_eq!(etcd.revision().await, before, "nothing was written");

    // A write between the read and the write back is a conflict, not lost.
    let other = client.clone();
    let error = client
        .update_flag("beta", move |flag| {
            let sneaked = std::thread::spawn(move || {
                let runtime = tokio::runtime::Runtime::new().unwrap();
                runtime.block_on(other.disable_flag("beta")).unwrap()
            });
            sneaked.join().unwrap();
            flag.insert("defaultVariant".into(), "off".into());
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Conflict { .. }), "{error}");
    let now = stored(client.clone()).await;
    assert_eq!(
        (&now.value["state"], &now.value["defaultVariant"]),
        (&json!("DISABLED"), &json!("on"))
    );

    // A stored definition that is not an object (written by another tool).
    let key = client.flag_etcd_key("beta").unwrap();
    etcd.raw().await.put(key, "[1]", None).await.unwrap();
    let error = client.enable_flag("beta").await.unwrap_err();
    assert!(error.to_string().contains("not a JSON object"), "{error}");
}
