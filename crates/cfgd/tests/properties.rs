//! Property tests against a real etcd: what is stored reads back equal,
//! through every read path, secrets included.

use std::time::Duration;

use cfgd::Client;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use crate::arbitrary;
use crate::common::{self, EtcdCluster};

#[test]
fn a_stored_value_reads_back_equal() {
    common::logs();
    let etcd = EtcdCluster::single();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ns = common::namespace("prop");
    let keyring = cfgd::secret::Keyring::generate();
    let connect = |live: bool| {
        Client::builder()
            .endpoints(etcd.endpoints())
            .namespace(&ns)
            .live(live)
            .keyring(cfgd::secret::Keyring::parse(&keyring).unwrap())
            .request_timeout(Duration::from_secs(5))
            .connect()
    };
    let (live, one_shot) = runtime.block_on(async {
        let live = connect(true).await.unwrap();
        live.set_policy_json(r#"{"secrets": ["s/*"]}"#)
            .await
            .unwrap();
        (live, connect(false).await.unwrap())
    });
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    let cases = (arbitrary::name(), any::<bool>(), arbitrary::json());
    runner
        .run(&cases, |(name, secret, value)| {
            // Under `p/` or `s/`: the policy makes every `s/` name secret.
            let name = format!("{}/{name}", if secret { "s" } else { "p" });
            runtime.block_on(async {
                // Written as a typed value and as text, read by a live and a
                // one-shot client, as a value and through an entry.
                let revision = live.set(&name, &value).await.unwrap();
                let entry = one_shot.get_entry::<Value>(&name).await.unwrap().unwrap();
                prop_assert_eq!(&entry.value, &value);
                prop_assert_eq!((entry.revision, entry.secret), (revision, secret));
                prop_assert_eq!(live.get::<Value>(&name).await.unwrap(), Some(value.clone()));
                one_shot.set_json(&name, &value.to_string()).await.unwrap();
                prop_assert_eq!(
                    one_shot.get::<Value>(&name).await.unwrap(),
                    Some(value.clone())
                );
                common::eventually(Duration::from_secs(10), || async {
                    live.get_entry::<Value>(&name)
                        .await
                        .unwrap()
                        .unwrap()
                        .revision
                        > revision
                })
                .await;
                prop_assert_eq!(live.get::<Value>(&name).await.unwrap(), Some(value.clone()));
                Ok(())
            })
        })
        .unwrap();
}
