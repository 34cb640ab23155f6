//! TLS to etcd: a real etcd that requires TLS and client certificates
//! (`--client-cert-auth`), and the clear one-line errors for TLS set up wrong.

use std::time::Duration;

use cfgd::{Client, ClientBuilder, Error};
use tokio_stream::StreamExt;

use crate::common::pki::Pki;
use crate::common::{self, EtcdCluster};

fn builder(etcd: &EtcdCluster) -> ClientBuilder {
    common::logs();
    Client::builder()
        .endpoints(etcd.endpoints())
        .namespace("tls")
        .connect_timeout(Duration::from_secs(2))
}

fn with_cert(builder: ClientBuilder, pki: &Pki) -> ClientBuilder {
    builder
        .ca_file(pki.ca())
        .client_cert(pki.client_cert(), pki.client_key())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_writes_and_watches_over_tls_with_a_client_certificate() {
    let pki = Pki::new();
    let etcd = EtcdCluster::single_tls(&pki);
    let client = with_cert(builder(&etcd), &pki).connect().await.unwrap();
    let mut changes = client.subscribe("").unwrap();
    let writer = with_cert(builder(&etcd), &pki)
        .live(false)
        .connect()
        .await
        .unwrap();
    let revision = writer.set("limit", &7).await.unwrap();
    let change = tokio::time::timeout(Duration::from_secs(20), changes.next())
        .await
        .expect("a change within 20 s")
        .unwrap();
    assert_eq!((change.name(), change.revision()), ("limit", revision));
    assert_eq!(client.get::<i32>("limit").await.unwrap(), Some(7));
}

#[tokio::test]
async fn tls_set_up_wrong_fails_with_one_clear_line() {
    let pki = Pki::new();
    let etcd = EtcdCluster::single_tls(&pki);
    let refused = |result: cfgd::Result<Client>| {
        let error = result.expect_err("must not connect");
        let line = error.to_string();
        assert!(!line.contains('\n'), "{line}");
        (error, line)
    };

    // etcd wants a client certificate.
    let (error, line) = refused(builder(&etcd).ca_file(pki.ca()).connect().await);
    assert!(matches!(error, Error::Tls { .. }), "{line}");
    assert!(line.contains("wants a client certificate"), "{line}");
    // A CA that did not sign etcd's certificate.
    let other = Pki::new();
    let (_, line) = refused(with_cert(builder(&etcd), &other).connect().await);
    assert!(line.contains("certificate"), "{line}");

    // Mistakes caught before anything is sent, all invalid input.
    let https_without_ca = builder(&etcd).connect().await;
    let not_pem = builder(&etcd)
        .ca_file(pki.dir().join("ca.pem.missing"))
        .connect()
        .await;
    let plain_with_ca = Client::builder()
        .endpoints(["http://127.0.0.1:1"])
        .ca_file(pki.ca())
        .connect()
        .await;
    let garbage = pki.dir().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let garbage_ca = builder(&etcd).ca_file(&garbage).connect().await;
    let key_as_ca = builder(&etcd).ca_file(pki.client_key()).connect().await;
    for (result, says) in [
        (https_without_ca, "need the CA that signs"),
        (not_pem, "cannot read the CA file"),
        (plain_with_ca, "needs https:// endpoints"),
        (garbage_ca, "is not PEM with a CERTIFICATE"),
        (key_as_ca, "is not PEM with a CERTIFICATE"),
    ] {
        let (error, line) = refused(result);
        assert!(matches!(error, Error::Tls { .. }), "{line}");
        assert!(error.is_invalid_input() && line.contains(says), "{line}");
    }
}
