//! Single sign-on against a real OpenID provider: panva's oidc-provider
//! (OpenID Certified), configured by tests/ui/oidc-provider.mjs; the
//! console's sign-in driven through Debian's chromium by tests/ui/sso.mjs,
//! with the provider's JWT access tokens as bearer tokens and each input
//! that must be refused. Here: the processes, the data, and what the
//! server logged of each refusal.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::common::pki::Pki;
use crate::common::{self, EtcdCluster, KillOnDrop};
use crate::harness::{http, start_on, start_with_settings, OPS};

/// One OpenID provider process, killed when dropped.
struct Provider {
    _child: KillOnDrop,
    issuer: String,
}

/// A provider whose client `cfgd` returns to `redirect`, signing with the
/// keys in `keys` (made there by the first provider to start).
fn provider(redirect: &str, keys: &Path) -> Provider {
    provider_on(redirect, keys, None)
}

/// [`provider`], serving HTTPS with the server certificate of `pki`.
fn provider_on(redirect: &str, keys: &Path, pki: Option<&Pki>) -> Provider {
    let root = common::root();
    assert!(
        root.join("tests/ui/node_modules/oidc-provider").is_dir(),
        "tests/ui/node_modules/oidc-provider is missing: run scripts/install-deps.sh --test (npm ci there)"
    );
    let mut command = Command::new("node");
    command
        .arg(root.join("tests/ui/oidc-provider.mjs"))
        .env("OIDC_REDIRECT", redirect)
        .env("OIDC_KEYS", keys);
    if let Some(pki) = pki {
        command
            .env("OIDC_TLS_CERT", pki.server_cert())
            .env("OIDC_TLS_KEY", pki.server_key());
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run node (scripts/install-deps.sh --test installs it)");
    let stdout = child.stdout.take().unwrap();
    let child = KillOnDrop(child);
    let mut lines = std::io::BufReader::new(stdout);
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    // Drained for as long as it runs: a closed pipe would end it at its
    // next notice.
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    let issuer = line
        .trim()
        .strip_prefix("issuer ")
        .unwrap_or_else(|| panic!("the OpenID provider did not start: {line:?}"))
        .to_owned();
    Provider {
        _child: child,
        issuer,
    }
}

async fn seed(etcd: &EtcdCluster) {
    for (ns, name, value) in [
        ("prod", "feature.limits", json!({"max_items": 5})),
        ("staging", "feature.limits", json!({"max_items": 50})),
        ("vault", "root.password", json!("not for payments")),
    ] {
        let client = cfgd::Client::builder()
            .endpoints(etcd.endpoints())
            .namespace(ns)
            .actor("seed")
            .live(false)
            .connect()
            .await
            .unwrap();
        client.set(name, &value).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_with_a_real_provider_signs_in_scopes_and_refuses_bad_input() {
    common::logs();
    let etcd = EtcdCluster::single();
    seed(&etcd).await;
    // The server's address goes in its own settings (the redirect URL),
    // so it is chosen before it starts.
    let address = format!("127.0.0.1:{}", common::free_port());
    let redirect = format!("http://{address}/oidc/callback");
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let idp = provider(&redirect, &keys);
    // Another issuer signing with the very same keys (as one provider's
    // tenants do): only the issuer check tells its tokens apart.
    let other = provider(&redirect, &keys);
    let settings = format!(
        r#"
[oidc]
issuer = "{issuer}"
client_id = "cfgd"
client_secret = "cfgd-client-secret"
redirect_url = "{redirect}"
scopes = ["openid", "email", "groups"]
audience = "urn:cfgd:api"
leeway = 0

[oidc.groups]
payments = {{ prod = "write", staging = "read" }}
"#,
        issuer = idp.issuer,
    );
    let server = start_on(&etcd, &address, &settings, &[]);
    let sso = http(&server, "GET", "/oidc", &[], "");
    assert_eq!(sso.status, 200, "{}", sso.body);
    assert!(sso.body.contains(&idp.issuer), "{}", sso.body);

    let root = common::root();
    assert!(
        root.join("tests/ui/node_modules/playwright-core").is_dir(),
        "tests/ui/node_modules is missing: run scripts/install-deps.sh --test (npm ci there)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/install-deps.sh --test (Debian's chromium)"
    );
    let out = Command::new("node")
        .arg(root.join("tests/ui/sso.mjs"))
        .env("CFGD_URL", format!("http://{address}"))
        .env("OIDC_ISSUER", &idp.issuer)
        .env("OIDC_OTHER_ISSUER", &other.issuer)
        .env("CFGD_ETCD", etcd.endpoints_arg())
        .env("CFGD_ETCDCTL", common::etcdctl_binary())
        .env("CFGD_SHOTS", root.join("target/ui-screenshots"))
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "SSO browser tests failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The edit is in etcd, as alice made it.
    let prod = http(
        &server,
        "GET",
        "/v1/namespaces/prod/config/feature.limits",
        &[OPS],
        "",
    );
    let stored: serde_json::Value = serde_json::from_str(&prod.body).unwrap();
    assert_eq!(stored, json!({"max_items": 42}), "{}", prod.body);
    // Both people signed out: no session is left in etcd.
    let sessions = common::etcdctl(
        &etcd.endpoints_arg(),
        &["get", "/cfgd/_sessions/", "--prefix", "--keys-only"],
    );
    assert_eq!(sessions.trim(), "", "sessions left open");
    // Each refusal is logged with its reason.
    let log = plain(&std::fs::read_to_string(server._dir.path().join("cfgd.log")).unwrap());
    for reason in [
        "refused a bearer JWT reason=issued by another issuer",
        "refused a bearer JWT reason=meant for another audience",
        "refused a bearer JWT reason=its signature does not verify",
        "refused a bearer JWT reason=expired",
        "SSO sign-in refused reason=no sign-in in progress in this browser (its PKCE verifier is missing",
        "SSO sign-in refused reason=the issuer refused the code",
        "without its CSRF token",
    ] {
        assert!(
            log.contains(reason),
            "the log does not say {reason:?}:\n{log}"
        );
    }
    assert!(log.contains("signed in with SSO"), "{log}");

    // Where to return after sign-in is a console page of this server, or
    // the console's start: never another site.
    for (asked, kept) in [
        ("/ui/%23/ns/prod", "/ui/#/ns/prod"),
        ("//evil.example/ui/", "/ui/"),
        ("https://evil.example/ui/", "/ui/"),
        ("/ui/..%5C..%5Cevil", "/ui/"),
    ] {
        let login = http(
            &server,
            "GET",
            &format!("/oidc/login?return_to={asked}"),
            &[],
            "",
        );
        assert_eq!(login.status, 303, "{}", login.body);
        let to = login.header("location").unwrap();
        assert!(to.contains("code_challenge_method=S256"), "{to}");
        let attempt = login.header("set-cookie").unwrap();
        let sealed = attempt.strip_prefix("cfgd_oidc=").unwrap();
        let body = sealed.split(['.', ';']).next().unwrap();
        use base64::Engine;
        let json: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(body)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(json["return_to"], kept, "{asked}");
    }
}

/// Each `[oidc]` setting a server must not start with is refused in one
/// line naming it; a sound one passes, with no tokens beside it.
#[test]
fn bad_oidc_settings_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty-secret");
    std::fs::write(&empty, "\n").unwrap();
    let good = r#"
issuer = "https://login.example.com"
client_id = "cfgd"
client_secret = "s"
redirect_url = "https://cfgd.example.com/oidc/callback"
"#;
    let check = |table: &str| {
        let settings: cfgd_server::Settings =
            toml::from_str(&format!("[oidc]\n{table}")).map_err(|e| e.to_string())?;
        settings.validate()
    };
    check(&format!(
        "{good}[oidc.groups]\npayments = {{ prod = \"write\" }}\n"
    ))
    .unwrap();
    for (change, expected) in [
        (
            ("issuer", "\"login.example.com\""),
            "[oidc] issuer must be an http:// or https:// URL",
        ),
        (
            ("redirect_url", "\"https://cfgd.example.com/\""),
            "[oidc] redirect_url must be this server's /oidc/callback",
        ),
        (
            ("client_secret", "\"\""),
            "[oidc] give exactly one of client_secret or client_secret_file",
        ),
        (
            ("scopes", "[\"email\"]"),
            "[oidc] scopes must include \"openid\"",
        ),
        (
            ("session_ttl", "5"),
            "[oidc] session_ttl must be from 60 seconds to 7 days",
        ),
        (
            ("ca_file", "\"/nonexistent/ca.pem\""),
            "[oidc] ca_file /nonexistent/ca.pem",
        ),
    ] {
        let (key, value) = change;
        let table: String = good
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} =")))
            .chain([format!("{key} = {value}").as_str()])
            .map(|l| format!("{l}\n"))
            .collect();
        let err = check(&table).unwrap_err();
        assert!(err.contains(expected), "{key}: {err}");
        assert!(!err.contains('\n'), "{key}: more than one line: {err}");
    }
    let file = format!(
        "{}client_secret_file = {:?}\n",
        good.replace("client_secret = \"s\"\n", ""),
        empty.to_str().unwrap()
    );
    assert!(check(&file).unwrap_err().contains("is empty"));
    let groups = format!("{good}[oidc.groups]\npayments = {{ \"-bad\" = \"write\" }}\n");
    assert!(check(&groups)
        .unwrap_err()
        .contains("[oidc.groups] \"payments\""));
    let scope = format!("{good}[oidc.groups]\npayments = {{ prod = \"owner\" }}\n");
    assert!(check(&scope).unwrap_err().contains("owner"));
}

/// `text` without its terminal colours.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // An escape runs to its final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A client-credentials access token of `ci-payments` from `issuer`,
/// fetched by node trusting `ca` (the provider's HTTPS CA).
fn machine_token(issuer: &str, ca: &Path) -> String {
    const FETCH: &str = r#"
const res = await fetch(`${process.env.ISSUER}/token`, {
  method: "POST",
  headers: {
    Authorization: `Basic ${Buffer.from("ci-payments:ci-payments-secret").toString("base64")}`,
    "Content-Type": "application/x-www-form-urlencoded",
  },
  body: new URLSearchParams({ grant_type: "client_credentials", resource: "urn:cfgd:api", scope: "api" }),
});
const body = await res.json();
if (!res.ok) { console.error(JSON.stringify(body)); process.exit(1); }
console.log(body.access_token);
"#;
    let out = Command::new("node")
        .args(["--input-type=module", "-e", FETCH])
        .env("ISSUER", issuer)
        .env("NODE_EXTRA_CA_CERTS", ca)
        .output()
        .expect("run node");
    common::stdout_of("a token from the provider", out)
        .trim()
        .to_owned()
}

/// The issuer's discovery document and keys over HTTPS: trusted through
/// `ca_file`, and refused, naming the certificate, without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_jwts_verify_against_an_https_issuer_trusted_through_ca_file() {
    common::logs();
    let etcd = EtcdCluster::single();
    seed(&etcd).await;
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let redirect = "https://cfgd.example/oidc/callback";
    let idp = provider_on(redirect, &dir.path().join("keys.json"), Some(&pki));
    assert!(
        idp.issuer.starts_with("https://localhost:"),
        "{}",
        idp.issuer
    );
    let token = machine_token(&idp.issuer, &pki.ca());
    let settings = |ca: &str| {
        format!(
            "[oidc]\nissuer = {:?}\nclient_id = \"cfgd\"\nclient_secret = \"s\"\n\
             redirect_url = {redirect:?}\naudience = \"urn:cfgd:api\"\n{ca}\n\
             [oidc.groups]\npayments = {{ prod = \"read\" }}\n",
            idp.issuer
        )
    };
    let bearer = format!("Bearer {token}");
    let trusting = start_with_settings(
        &etcd,
        &settings(&format!("ca_file = {:?}", pki.ca().to_str().unwrap())),
        &[],
    );
    let read = http(
        &trusting,
        "GET",
        "/v1/namespaces/prod/config/feature.limits",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(read.status, 200, "{}", read.body);
    let untrusting = start_with_settings(&etcd, &settings(""), &[]);
    let refused = http(
        &untrusting,
        "GET",
        "/v1/namespaces/prod/config/feature.limits",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(refused.body.contains("certificate"), "{}", refused.body);
}
