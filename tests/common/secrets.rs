//! Helpers of the secrets tests, shared by the library's and the server's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cfgd::secret::Keyring;
use cfgd::Client;

use super::EtcdCluster;

/// A new secret key file `name` in `dir`.
pub fn key_file(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, Keyring::generate()).unwrap();
    path
}

/// A client of `ns`, holding the secret key at `key` when given.
pub async fn client(etcd: &EtcdCluster, ns: &str, key: Option<&Path>, live: bool) -> Client {
    super::logs();
    let mut builder = Client::builder()
        .endpoints(etcd.endpoints())
        .namespace(ns)
        .live(live)
        .connect_timeout(Duration::from_secs(2));
    if let Some(key) = key {
        builder = builder.secret_key_file(key);
    }
    builder.connect().await.unwrap()
}

/// Everything etcd holds, keys and values, as text.
pub fn all_of_etcd(etcd: &EtcdCluster) -> String {
    super::etcdctl(&etcd.endpoints_arg(), &["get", "--prefix", ""])
}
