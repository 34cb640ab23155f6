// Single sign-on end to end, run by crates/cfgd-server/tests/oidc.rs: the
// console's SSO sign-in in Debian's chromium against a real OpenID
// provider (tests/ui/oidc-provider.mjs), the provider's JWT access tokens
// as bearer tokens, and each input that must be refused.
//
// Environment: CFGD_URL (the server, [oidc] configured), OIDC_ISSUER (its
// issuer), OIDC_OTHER_ISSUER (another issuer signing with the same keys),
// CFGD_ETCD and CFGD_ETCDCTL (to see that etcd is unchanged), CFGD_SHOTS,
// CHROMIUM.

import path from "node:path";
import fs from "node:fs";
import { execFileSync } from "node:child_process";
import { chromium } from "playwright-core";

const url = process.env.CFGD_URL;
const issuer = process.env.OIDC_ISSUER;
const other = process.env.OIDC_OTHER_ISSUER;
const shots = process.env.CFGD_SHOTS;
fs.mkdirSync(shots, { recursive: true });
const AUDIENCE = "urn:cfgd:api";

function check(ok, what) {
  if (!ok) throw new Error(what);
}

function etcdRevision() {
  const out = execFileSync(process.env.CFGD_ETCDCTL, ["--endpoints", process.env.CFGD_ETCD, "get", "/cfgd/", "--prefix", "--limit", "1", "-w", "json"], {
    env: { ...process.env, ETCDCTL_API: "3" },
  });
  return JSON.parse(out).header.revision;
}

async function call(method, p, headers = {}, body) {
  const res = await fetch(url + p, { method, headers, body, redirect: "manual" });
  const text = await res.text();
  let data = text;
  try {
    data = JSON.parse(text);
  } catch {}
  return { status: res.status, data, headers: res.headers };
}

/** A client-credentials access token of `client` at `at`, for `resource`. */
async function machineToken(client, resource = AUDIENCE, at = issuer) {
  const res = await fetch(`${at}/token`, {
    method: "POST",
    headers: {
      Authorization: `Basic ${Buffer.from(`${client}:${client}-secret`).toString("base64")}`,
      "Content-Type": "application/x-www-form-urlencoded",
    },
    body: new URLSearchParams({ grant_type: "client_credentials", resource, scope: "api" }),
  });
  const body = await res.json();
  check(res.ok && body.access_token, `token of ${client}: ${JSON.stringify(body)}`);
  return body.access_token;
}

const bearer = (t) => ({ Authorization: `Bearer ${t}` });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu"],
});
let failed = 0;
let current = null; // the page a failure is shown from
async function test(name, body) {
  try {
    await body();
    console.log(`ok  ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.stack || e}`);
    if (current && !current.isClosed()) {
      await current.screenshot({ path: path.join(shots, `sso-failed-${name.split(".")[0]}.png`), fullPage: true }).catch(() => {});
    }
  }
}

/** Signs `login` in with SSO in a new context; what the flow left behind. */
async function ssoSignIn(login) {
  const context = await browser.newContext();
  const page = await context.newPage();
  current = page;
  page.on("pageerror", (e) => console.log(`  page error: ${e.message}`));
  await page.goto(`${url}/ui/`);
  await page.getByRole("link", { name: "Sign in with SSO" }).click();
  // The provider's own pages now.
  await page.getByRole("textbox", { name: "Enter any login" }).fill(login);
  await page.getByPlaceholder("and password").fill("any password");
  const attempt = (await context.cookies(`${url}/oidc/callback`)).find((c) => c.name === "cfgd_oidc");
  await page.getByRole("button", { name: "Sign-in" }).click();
  const back = page.waitForRequest((r) => r.url().startsWith(`${url}/oidc/callback`));
  await page.getByRole("button", { name: "Continue" }).click();
  const callback = (await back).url();
  await page.getByRole("button", { name: "Sign out" }).waitFor();
  const session = (await context.cookies(url)).find((c) => c.name === "cfgd_session");
  return { context, page, callback, attempt, session };
}

let alice;

await test("1. SSO signs alice in; she sees the namespaces her group maps to", async () => {
  alice = await ssoSignIn("alice");
  const { page, session, attempt } = alice;
  check(attempt && attempt.httpOnly && attempt.sameSite === "Lax", `attempt cookie ${JSON.stringify(attempt)}`);
  check(session && session.httpOnly && session.sameSite === "Strict", `session cookie ${JSON.stringify(session)}`);
  await page.getByText("Signed in as oidc:alice (alice@example.com)").waitFor();
  const table = page.getByRole("region", { name: "Namespaces" });
  await table.getByRole("link", { name: "prod" }).waitFor();
  await table.getByRole("link", { name: "staging" }).waitFor();
  check((await table.getByRole("link", { name: "vault" }).count()) === 0, "alice sees vault");
  await page.screenshot({ path: path.join(shots, "sso-namespaces.png"), fullPage: true });
});

await test("2. alice's edit is stored and audited as oidc:alice", async () => {
  const { page } = alice;
  await page.evaluate(() => (location.hash = "#/ns/prod/config/feature.limits"));
  await page.getByRole("button", { name: "Edit" }).click();
  await page.getByLabel("Value (JSON)").fill('{"max_items": 42}');
  await page.getByLabel("Message").fill("signed in with SSO");
  const publish = page.getByRole("button", { name: "Publish" });
  await page.waitForFunction(() => ![...document.querySelectorAll("button")].find((b) => b.textContent === "Publish")?.disabled);
  await publish.click();
  await page.getByLabel("Value of feature.limits").filter({ hasText: '"max_items": 42' }).waitFor();
  const audit = await call("GET", "/v1/namespaces/prod/audit?prefix=feature.limits", bearer("admin-secret"));
  check(audit.status === 200, `audit ${audit.status}`);
  const records = audit.data;
  const mine = records.find((r) => r.message === "signed in with SSO");
  check(mine && mine.actor === "oidc:alice (alice@example.com)", `audit ${JSON.stringify(records.slice(0, 3))}`);
  // Read-only where her group gives read: no Edit in staging.
  await page.evaluate(() => (location.hash = "#/ns/staging/config"));
  await page.getByRole("heading", { name: /staging/ }).first().waitFor();
  check((await page.getByRole("button", { name: "New value" }).count()) === 0, "alice may add values in staging");
});

await test("3. a cookie-signed PUT without the CSRF token is 403 and changes nothing", async () => {
  const cookie = `cfgd_session=${alice.session.value}`;
  const before = etcdRevision();
  const put = await call("PUT", "/v1/namespaces/prod/config/feature.limits", { Cookie: cookie, "Content-Type": "application/json" }, '{"max_items": 1}');
  check(put.status === 403 && put.data.error.code === "csrf", `PUT without CSRF: ${put.status} ${JSON.stringify(put.data)}`);
  const wrong = await call("PUT", "/v1/namespaces/prod/config/feature.limits", { Cookie: cookie, "X-Cfgd-Csrf": "0".repeat(64) }, '{"max_items": 1}');
  check(wrong.status === 403, `PUT with a wrong CSRF token: ${wrong.status}`);
  // Another kind of Authorization header does not take the cookie's place.
  const basic = await call("PUT", "/v1/namespaces/prod/config/feature.limits", { Cookie: cookie, Authorization: "Basic eDp5" }, '{"max_items": 1}');
  check(basic.status === 401 || basic.status === 403, `PUT with Basic beside the cookie: ${basic.status} ${JSON.stringify(basic.data)}`);
  check(etcdRevision() === before, "etcd changed");
  const who = await call("GET", "/v1/whoami", { Cookie: cookie });
  check(who.status === 200 && who.data.via === "session" && who.data.csrf, `whoami ${JSON.stringify(who.data)}`);
  const ok = await call("PUT", "/v1/namespaces/prod/config/csrf.checked", { Cookie: cookie, "X-Cfgd-Csrf": who.data.csrf }, "true");
  check(ok.status === 200 || ok.status === 201, `PUT with the CSRF token: ${ok.status} ${JSON.stringify(ok.data)}`);
});

await test("4. a replayed code and a callback without its PKCE verifier make no session", async () => {
  check(alice.callback && alice.attempt, "the flow's callback was not seen");
  // The whole callback again, attempt cookie and all: the provider refuses
  // a code it already traded.
  const replay = await call("GET", alice.callback.slice(url.length), { Cookie: `cfgd_oidc=${alice.attempt.value}` });
  check(replay.status === 400 && /refused the code/.test(replay.data.error.message), `replay: ${replay.status} ${JSON.stringify(replay.data)}`);
  check(!(replay.headers.get("set-cookie") || "").includes("cfgd_session=") , "the replay set a session");
  const bare = await call("GET", alice.callback.slice(url.length));
  check(bare.status === 400 && /PKCE verifier is missing/.test(bare.data.error.message), `no verifier: ${bare.status} ${JSON.stringify(bare.data)}`);
  const forged = await call("GET", alice.callback.slice(url.length), { Cookie: `cfgd_oidc=${alice.attempt.value.replace(/.$/, (c) => (c === "A" ? "B" : "A"))}` });
  check(forged.status === 400 && /no sign-in in progress/.test(forged.data.error.message), `forged attempt: ${forged.status} ${JSON.stringify(forged.data)}`);
});

await test("5. signing out ends the session on the server", async () => {
  const { page, session } = alice;
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("link", { name: "Sign in with SSO" }).waitFor();
  const after = await call("GET", "/v1/whoami", { Cookie: `cfgd_session=${session.value}` });
  check(after.status === 401, `whoami with the old cookie: ${after.status}`);
  await alice.context.close();
});

await test("6. bob, whose group maps to nothing, is signed in with no access, and told so", async () => {
  const bob = await ssoSignIn("bob");
  await bob.page.getByText("Signed in as oidc:bob (bob@example.com)").waitFor();
  await bob.page.getByRole("status").filter({ hasText: "give no access to any namespace" }).waitFor();
  check((await bob.page.getByRole("region", { name: "Namespaces" }).count()) === 0, "bob sees a namespace");
  const prod = await call("GET", "/v1/namespaces/prod/config", { Cookie: `cfgd_session=${bob.session.value}` });
  check(prod.status === 403, `bob reads prod: ${prod.status}`);
  await bob.page.screenshot({ path: path.join(shots, "sso-no-access.png"), fullPage: true });
  await bob.page.getByRole("button", { name: "Sign out" }).click();
  await bob.page.getByRole("link", { name: "Sign in with SSO" }).waitFor();
  await bob.context.close();
});

await test("7. a local token still signs in beside SSO", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  current = page;
  await page.goto(`${url}/ui/`);
  await page.getByRole("link", { name: "Sign in with SSO" }).waitFor();
  await page.screenshot({ path: path.join(shots, "sso-sign-in.png"), fullPage: true });
  await page.getByLabel("Token").fill("ops-secret");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("Signed in as ops").waitFor();
  await page.getByRole("region", { name: "Namespaces" }).getByRole("link", { name: "vault" }).waitFor();
  await context.close();
});

await test("8. a CI job's JWT reads within its scope and gets 403 outside it", async () => {
  const token = await machineToken("ci-payments");
  const read = await call("GET", "/v1/namespaces/prod/config/feature.limits", bearer(token));
  check(read.status === 200, `read prod: ${read.status} ${JSON.stringify(read.data)}`);
  const outside = await call("GET", "/v1/namespaces/vault/config", bearer(token));
  check(outside.status === 403, `read vault: ${outside.status}`);
  const before = etcdRevision();
  const write = await call("PUT", "/v1/namespaces/staging/config/x", { ...bearer(token), "Content-Type": "application/json" }, "1");
  check(write.status === 403, `write staging (read only): ${write.status}`);
  check(etcdRevision() === before, "etcd changed");
  const who = await call("GET", "/v1/whoami", bearer(token));
  check(who.data.name === "oidc:ci-payments" && who.data.via === "jwt", `whoami ${JSON.stringify(who.data)}`);
});

await test("9. JWTs of another issuer, expired, tampered or for another audience are refused", async () => {
  const refused = async (what, token, reason) => {
    const res = await call("GET", "/v1/namespaces/prod/config", bearer(token));
    check(res.status === 401 && res.data.error.message.includes(reason), `${what}: ${res.status} ${JSON.stringify(res.data)}`);
  };
  await refused("another issuer", await machineToken("ci-payments", AUDIENCE, other), "issued by another issuer");
  await refused("another audience", await machineToken("ci-payments", "urn:other:api"), "another audience");
  const good = await machineToken("ci-payments");
  const [head, body, signature] = good.split(".");
  const claims = JSON.parse(Buffer.from(body, "base64url"));
  claims.groups = ["admins", "payments"];
  await refused("tampered", `${head}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${signature}`, "signature does not verify");
  const short = await machineToken("ci-short");
  await new Promise((r) => setTimeout(r, 2500));
  await refused("expired", short, "expired");
});

await browser.close();
if (failed) {
  console.log(`${failed} SSO test(s) failed`);
  process.exit(1);
}
