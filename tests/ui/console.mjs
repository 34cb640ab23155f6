// Browser tests of cfgd's web console, run by tests/console.rs against a
// real cfgd and a real etcd: Debian's chromium, headless, driven by
// playwright-core, by role and label as a person would.
//
// Environment: CFGD_URL (the server), CFGD_ETCD (etcd endpoints),
// CFGD_ETCDCTL (the etcdctl binary), CFGD_SHOTS (screenshot folder),
// CHROMIUM (the browser, /usr/bin/chromium by default). Tokens are those of
// tests/server.rs: ops and reviewer (write), admin, reader (read, prod only).

import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import net from "node:net";
import { chromium } from "playwright-core";

const url = process.env.CFGD_URL;
const etcd = process.env.CFGD_ETCD;
const etcdctl = process.env.CFGD_ETCDCTL || "etcdctl";
const shots = process.env.CFGD_SHOTS;
const only = process.env.CFGD_UI_ONLY;
const origin = new URL(url).origin;
const tokens = { ops: "ops-secret", reviewer: "reviewer-secret", admin: "admin-secret", reader: "reader-secret", vault: "vault-secret" };
const axeSource = fs.readFileSync(new URL("./node_modules/axe-core/axe.min.js", import.meta.url), "utf8");
fs.mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu"],
});
const foreign = [];

function check(ok, what) {
  if (!ok) throw new Error(what);
}

async function rest(method, p, token, body, headers = {}) {
  const res = await fetch(url + p, {
    method,
    headers: { ...(token ? { Authorization: `Bearer ${tokens[token]}` } : {}), ...headers },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let data = text;
  try {
    data = JSON.parse(text);
  } catch {}
  return { status: res.status, data, etag: res.headers.get("etag") };
}

function etcdRevision() {
  const out = execFileSync(etcdctl, ["--endpoints", etcd, "get", "/cfgd/", "--prefix", "--limit", "1", "-w", "json"], {
    env: { ...process.env, ETCDCTL_API: "3" },
  });
  return JSON.parse(out).header.revision;
}

/** A fresh browser context (its own sessionStorage), on the console. */
async function open({ token, scheme = "light", width = 1280, height = 900, hash = "", audit = false, base = url } = {}) {
  // axe is injected as a script, which the console's CSP rightly refuses:
  // only the audit pages bypass it.
  const context = await browser.newContext({ colorScheme: scheme, viewport: { width, height }, bypassCSP: audit });
  const page = await context.newPage();
  page.on("request", (r) => {
    const u = new URL(r.url());
    if (u.protocol.startsWith("http") && u.origin !== new URL(base).origin) foreign.push(r.url());
  });
  page.on("pageerror", (e) => console.log(`  page error: ${e.message}`));
  await page.goto(`${base}/ui/${hash}`);
  if (token) {
    await page.getByLabel("Token").fill(tokens[token]);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("button", { name: "Sign out" }).waitFor();
  }
  return page;
}

async function go(page, hash) {
  await page.evaluate((h) => (location.hash = h), hash);
}

async function shot(page, name) {
  await page.waitForTimeout(150);
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

async function axe(page, label) {
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 3) }));
  });
  const bad = result.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(!bad.length, `${label}: axe found ${JSON.stringify(bad)}`);
  return result;
}

/** A TCP relay to cfgd that can cut every connection through it and
 * refuse new ones: a network loss, as the browser sees it. */
async function relay() {
  const target = new URL(url);
  const sockets = new Set();
  let refusing = false;
  const server = net.createServer((client) => {
    if (refusing) return client.destroy();
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const [a, b] of [[client, upstream], [upstream, client]]) {
      sockets.add(a);
      a.pipe(b);
      a.on("error", () => b.destroy());
      a.on("close", () => {
        sockets.delete(a);
        b.destroy();
      });
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    cut() {
      refusing = true;
      for (const s of sockets) s.destroy();
    },
    heal() {
      refusing = false;
    },
    close() {
      this.cut();
      server.close();
    },
  };
}

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

test("first load transfers at most 300 KB, all from cfgd", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  let bytes = 0;
  cdp.on("Network.loadingFinished", (e) => (bytes += e.encodedDataLength));
  await page.goto(`${url}/ui/`);
  await page.getByLabel("Token").waitFor();
  await page.waitForLoadState("networkidle");
  console.log(`  first load: ${bytes} bytes on the wire`);
  check(bytes > 0 && bytes <= 300 * 1024, `first load was ${bytes} bytes`);
  await context.close();
});

test("1. sign in with a token and see only its namespaces", async () => {
  const reader = await open({ token: "reader" });
  await reader.getByRole("heading", { name: "Namespaces" }).waitFor();
  await reader.getByRole("link", { name: "prod", exact: true }).waitFor();
  check((await reader.getByRole("link", { name: "staging", exact: true }).count()) === 0, "reader sees staging");
  const token = await reader.evaluate(() => sessionStorage.getItem("cfgd-token"));
  check(token === tokens.reader, "the token is kept in sessionStorage");
  check(!reader.url().includes(tokens.reader), "the token is in the URL");
  await shot(reader, "namespaces-light");
  const ops = await open({ token: "ops", scheme: "dark" });
  await ops.getByRole("link", { name: "staging", exact: true }).waitFor();
  await ops.getByRole("link", { name: "prod", exact: true }).waitFor();
  await shot(ops, "namespaces-dark");
  const wrong = await open();
  await wrong.getByLabel("Token").fill("not-a-token");
  await wrong.getByRole("button", { name: "Sign in" }).click();
  await wrong.getByRole("alert").filter({ hasText: "unknown token" }).waitFor();
  for (const p of [reader, ops, wrong]) await p.context().close();
});

test("2. an edit that fails its schema shows the error inline and stores nothing", async () => {
  const page = await open({ token: "ops", hash: "#/ns/prod/config/database.config" });
  await page.getByRole("button", { name: "Edit" }).click();
  const before = etcdRevision();
  await page.getByLabel("Value (JSON)").fill('{"url": "postgres://db/app", "pool_size": 0}');
  const problems = page.getByRole("list", { name: "Problems" });
  await problems.filter({ hasText: "/pool_size: 0 is less than the minimum of 1" }).waitFor();
  check(await page.getByRole("button", { name: "Publish" }).isDisabled(), "publish is enabled on a schema failure");
  await page.getByLabel("Value (JSON)").fill('{"url": ');
  await problems.filter({ hasText: "Not valid JSON" }).waitFor();
  check(await page.getByRole("button", { name: "Publish" }).isDisabled(), "publish is enabled on bad JSON");
  check(etcdRevision() === before, "etcd changed");
  await page.context().close();
});

test("3. a valid edit shows its diff, publishes with a message, attributed to the token", async () => {
  const page = await open({ token: "ops", hash: "#/ns/prod/config/database.config" });
  await shot(page, "config-light");
  await page.getByRole("button", { name: "Edit" }).click();
  await page.getByLabel("Value (JSON)").fill('{"url": "postgres://db/app", "pool_size": 30}');
  await page.getByRole("list", { name: "Changes" }).filter({ hasText: "~ /pool_size: 20 → 30" }).waitFor();
  await page.getByLabel("Message").fill("bigger pool for the sale");
  const publish = page.getByRole("button", { name: "Publish" });
  await publish.waitFor();
  await page.waitForFunction(() => ![...document.querySelectorAll("button")].find((b) => b.textContent === "Publish")?.disabled);
  await shot(page, "config-edit-light");
  await publish.click();
  await page.getByLabel("Value of database.config").filter({ hasText: '"pool_size": 30' }).waitFor();
  const got = await rest("GET", "/v1/namespaces/prod/config/database.config", "reader");
  check(got.data.pool_size === 30, `stored ${JSON.stringify(got.data)}`);
  const audit = await rest("GET", "/v1/namespaces/prod/audit?prefix=database.config&limit=1", "reader");
  const record = audit.data[0];
  check(record.actor === "ops" && record.via === "http" && record.message === "bigger pool for the sale", `record ${JSON.stringify(record)}`);
  check(`"${record.revision}"` === got.etag, "the record shares the change's revision");
  await page.getByText("Last change").waitFor();
  await page.getByText("bigger pool for the sale").waitFor();
  await page.context().close();
});

test("4. a value written with etcdctl appears without a reload", async () => {
  const page = await open({ token: "reader", hash: "#/ns/prod/config" });
  await page.getByRole("link", { name: "database.config" }).waitFor();
  execFileSync(etcdctl, ["--endpoints", etcd, "put", "/cfgd/prod/config/from.etcdctl", '{"hello": "world"}'], {
    env: { ...process.env, ETCDCTL_API: "3" },
  });
  await page.getByRole("link", { name: "from.etcdctl" }).waitFor({ timeout: 10000 });
  await page.getByRole("link", { name: "from.etcdctl" }).click();
  await page.getByLabel("Value of from.etcdctl").filter({ hasText: '"hello": "world"' }).waitFor();
  await page.context().close();
});

test("4b. a flag changed elsewhere shows on the open flags page, marked", async () => {
  const page = await open({ token: "reader", hash: "#/ns/prod/flags" });
  const row = page.getByRole("row").filter({ hasText: "banner-text" });
  await row.filter({ hasText: "plain" }).waitFor();
  const flag = await rest("GET", "/v1/namespaces/prod/flags/banner-text", "reader");
  const next = { ...flag.data, defaultVariant: "sale" };
  const put = await rest("PUT", "/v1/namespaces/prod/flags/banner-text", "ops", next, { "If-Match": flag.etag });
  check(put.status === 200, `put: ${JSON.stringify(put.data)}`);
  await row.filter({ hasText: "sale" }).and(page.locator(".changed-now")).waitFor({ timeout: 10000 });
  await page.context().close();
});

test("4c. a lost connection shows a banner and resumes with Last-Event-ID", async () => {
  const line = await relay();
  const page = await open({ token: "reader", hash: "#/ns/prod/config", base: line.url });
  await page.getByRole("link", { name: "database.config" }).waitFor();
  // An event seen before the loss, so the stream has an id to resume from.
  await rest("PUT", "/v1/namespaces/prod/config/before.loss", "ops", "1");
  await page.getByRole("link", { name: "before.loss" }).waitFor({ timeout: 10000 });
  line.cut();
  await page.getByRole("status").filter({ hasText: "Connection to cfgd lost; reconnecting" }).waitFor({ timeout: 10000 });
  await shot(page, "connection-lost-light");
  // Written while the page is cut off: only a resumed stream brings it.
  const put = await rest("PUT", "/v1/namespaces/prod/config/while.offline", "ops", "1");
  check(put.status === 200, "the write while offline");
  line.heal();
  await page.getByRole("link", { name: "while.offline" }).waitFor({ timeout: 10000 });
  await page.waitForFunction(() => document.getElementById("banner").textContent === "");
  await page.context().close();
  line.close();
});

test("with --no-auth no token is asked", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${process.env.CFGD_NOAUTH_URL}/ui/`);
  await page.getByRole("heading", { name: "Namespaces" }).waitFor();
  check((await page.getByLabel("Token").count()) === 0, "a token is asked");
  await page.getByText("No sign-in (--no-auth)").waitFor();
  await page.getByRole("link", { name: "prod", exact: true }).click();
  await page.getByRole("button", { name: "New value" }).waitFor();
  await context.close();
});

test("5. a flag toggled in the console changes the next OFREP evaluation", async () => {
  const evaluate = () =>
    rest("POST", "/ofrep/v1/evaluate/flags/new-checkout", "reader", { context: { targetingKey: "u1" } }, { "X-Cfgd-Namespace": "prod" });
  const before = await evaluate();
  check(before.data.value === true, `before: ${JSON.stringify(before.data)}`);
  const page = await open({ token: "ops", hash: "#/ns/prod/flags" });
  await shot(page, "flags-light");
  const toggle = page.getByRole("switch", { name: "Enabled: new-checkout" });
  check(await toggle.isChecked(), "the flag shows as disabled");
  const row = page.getByRole("row").filter({ hasText: "new-checkout" });
  await toggle.click();
  // The box flips at once; the row says DISABLED once the server stored it.
  await row.filter({ hasText: "DISABLED" }).waitFor();
  check(!(await page.getByRole("switch", { name: "Enabled: new-checkout" }).isChecked()), "the switch is on");
  const after = await evaluate();
  check(after.data.value !== true && after.data.reason === "DISABLED", `after: ${JSON.stringify(after.data)}`);
  await page.getByRole("switch", { name: "Enabled: new-checkout" }).click();
  await row.filter({ hasText: "ENABLED" }).waitFor();
  check((await evaluate()).data.value === true, "enabled again");
  await page.context().close();
});

test("6. a rollout slider set to 30/70 is stored as fractional", async () => {
  const page = await open({ token: "ops", hash: "#/ns/prod/flags/new-checkout" });
  await page.getByRole("group", { name: "Rollout" }).waitFor();
  await page.getByLabel("on %").fill("30");
  check((await page.getByLabel("off %").inputValue()) === "70", "off follows to 70");
  await shot(page, "flag-detail-light");
  await page.getByRole("button", { name: "Save rollout" }).click();
  await page.getByLabel("Definition of new-checkout").filter({ hasText: '"fractional"' }).waitFor();
  const flag = await rest("GET", "/v1/namespaces/prod/flags/new-checkout", "reader");
  check(JSON.stringify(flag.data.targeting) === JSON.stringify({ fractional: [["on", 30], ["off", 70]] }), `targeting ${JSON.stringify(flag.data.targeting)}`);
  // The evaluate panel answers as OFREP does.
  await page.getByLabel("Evaluation context (JSON)").fill('{"targetingKey": "user-7"}');
  await page.getByRole("button", { name: "Evaluate" }).click();
  await page.getByRole("definition").filter({ hasText: "TARGETING_MATCH" }).waitFor();
  await page.context().close();
});

test("7. rollback from history restores the old value", async () => {
  await rest("PUT", "/v1/namespaces/prod/config/feature.limits", "ops", '{"max_items": 10}');
  const old = await rest("GET", "/v1/namespaces/prod/config/feature.limits", "reader");
  const oldRevision = old.etag.replace(/"/g, "");
  await rest("PUT", "/v1/namespaces/prod/config/feature.limits", "ops", '{"max_items": 99}');
  const page = await open({ token: "ops", hash: "#/ns/prod/history/feature.limits" });
  await page.getByRole("heading", { name: "History · feature.limits" }).waitFor();
  await shot(page, "history-light");
  await page.getByRole("button", { name: `Roll back to ${oldRevision}` }).click();
  const dialog = page.getByRole("dialog", { name: "Roll back feature.limits?" });
  await dialog.waitFor();
  await dialog.getByRole("button", { name: `Roll back to ${oldRevision}` }).click();
  await page.getByRole("status").or(page.locator("#announce")).filter({ hasText: "Rolled back" }).first().waitFor({ state: "attached" });
  const now = await rest("GET", "/v1/namespaces/prod/config/feature.limits", "reader");
  check(now.data.max_items === 10 && now.etag !== old.etag, `now ${JSON.stringify(now)}`);
  await page.context().close();
});

test("8. a conflicting edit shows the other change and does not overwrite it", async () => {
  await rest("PUT", "/v1/namespaces/prod/config/shared.setting", "ops", '{"mode": "a"}');
  const page = await open({ token: "ops", hash: "#/ns/prod/config/shared.setting" });
  await page.getByRole("button", { name: "Edit" }).click();
  await page.getByLabel("Value (JSON)").fill('{"mode": "mine"}');
  await page.getByRole("list", { name: "Changes" }).filter({ hasText: '~ /mode: "a" → "mine"' }).waitFor();
  // Meanwhile, someone else publishes.
  const theirs = await rest("PUT", "/v1/namespaces/prod/config/shared.setting", "reviewer", '{"mode": "theirs"}');
  check(theirs.status === 200, "their write");
  await page.getByText("This value changed underneath you").waitFor();
  await page.waitForFunction(() => ![...document.querySelectorAll("button")].find((b) => b.textContent === "Publish")?.disabled);
  await page.getByRole("button", { name: "Publish" }).click();
  const alert = page.getByRole("alert").filter({ hasText: "Someone else published meanwhile" });
  await alert.waitFor();
  await alert.getByRole("list", { name: "Their change" }).filter({ hasText: '~ /mode: "a" → "theirs"' }).waitFor();
  await alert.getByRole("list", { name: "Your edit against theirs" }).filter({ hasText: '~ /mode: "theirs" → "mine"' }).waitFor();
  await shot(page, "config-conflict-light");
  const stored = await rest("GET", "/v1/namespaces/prod/config/shared.setting", "reader");
  check(stored.data.mode === "theirs", `overwritten: ${JSON.stringify(stored.data)}`);
  await page.context().close();
});

test("9. a change request opened by one token and approved by another merges", async () => {
  const policy = await rest("PUT", "/v1/namespaces/prod/policy", "admin", { protected: ["payments/*"], approvals: 1 });
  check(policy.status === 200, `policy: ${JSON.stringify(policy.data)}`);
  await rest("PUT", "/v1/namespaces/prod/config/payments/limits", "ops", "1").then((r) => check(r.status === 403, "a direct write is refused"));
  const ops = await open({ token: "ops", hash: "#/ns/prod/config/payments/limits" });
  await ops.getByText("Protected by the policy").waitFor();
  await ops.getByRole("button", { name: "Edit" }).click();
  await ops.getByLabel("Value (JSON)").fill('{"max": 200}');
  await ops.getByLabel("Message").fill("limits for the sale");
  await ops.waitForFunction(() => ![...document.querySelectorAll("button")].find((b) => b.textContent === "Open change request")?.disabled);
  await ops.getByRole("button", { name: "Open change request" }).click();
  const heading = ops.getByRole("heading", { name: /^Change request #\d+ \(open\)$/ });
  await heading.waitFor();
  const id = (await heading.textContent()).match(/#(\d+)/)[1];
  check((await ops.getByRole("button", { name: "Approve" }).count()) === 0, "the author is offered Approve");
  await ops.getByRole("list", { name: "Request changes" }).filter({ hasText: "~ /max: 100 → 200" }).waitFor();
  await shot(ops, "request-light");
  const reviewer = await open({ token: "reviewer", hash: `#/ns/prod/requests/${id}` });
  await reviewer.getByRole("button", { name: "Approve" }).click();
  await reviewer.getByText("Approved by reviewer").waitFor();
  await reviewer.getByRole("button", { name: "Merge" }).click();
  await reviewer.getByRole("heading", { name: `Change request #${id} (merged)` }).waitFor();
  const stored = await rest("GET", "/v1/namespaces/prod/config/payments/limits", "reader");
  check(stored.data.max === 200, `stored ${JSON.stringify(stored.data)}`);
  const audit = await rest("GET", "/v1/namespaces/prod/audit?prefix=payments/limits&limit=10", "reader");
  const steps = audit.data.filter((r) => r.request === id).map((r) => `${r.action}:${r.actor}`);
  check(JSON.stringify(steps) === JSON.stringify(["request.merge:reviewer", "request.approve:reviewer", "request.create:ops"]), `steps ${steps}`);
  for (const p of [ops, reviewer]) await p.context().close();
});

test("10. a read-only token sees no edit controls, and a forged write is refused", async () => {
  const page = await open({ token: "reader", hash: "#/ns/prod/config/database.config" });
  await page.getByLabel("Value of database.config").waitFor();
  for (const name of ["Edit", "New value"]) check((await page.getByRole("button", { name }).count()) === 0, `reader sees ${name}`);
  await go(page, "#/ns/prod/flags/new-checkout");
  await page.getByLabel("Definition of new-checkout").waitFor();
  check((await page.getByRole("switch").count()) === 0, "reader sees toggles");
  check((await page.getByRole("button", { name: "Save rollout" }).count()) === 0, "reader sees Save rollout");
  await go(page, "#/ns/prod/history/database.config");
  await page.getByRole("heading", { name: "History · database.config" }).waitFor();
  check((await page.getByRole("button", { name: /Roll back/ }).count()) === 0, "reader sees Roll back");
  const token = await page.evaluate(() => sessionStorage.getItem("cfgd-token"));
  const forged = await page.evaluate(async (t) => {
    const r = await fetch("/v1/namespaces/prod/config/database.config", { method: "PUT", headers: { Authorization: `Bearer ${t}` }, body: "1" });
    return r.status;
  }, token);
  check(forged === 403, `forged write answered ${forged}`);
  await page.context().close();
});

test("12. a secret stays hidden, and is shown on request to the secrets scope only", async () => {
  const secret = process.env.CFGD_SECRET;
  const page = await open({ token: "ops", hash: "#/ns/keys/config/db/password" });
  const value = page.getByLabel("Value of db/password");
  await value.filter({ hasText: "Secret: hidden" }).waitFor();
  check((await page.getByRole("button", { name: "Reveal secret" }).count()) === 0, "a write token sees Reveal");
  await page.getByRole("button", { name: "Edit" }).click();
  const editor = page.getByLabel("Value (JSON)");
  check((await editor.inputValue()) === "", "the editor of a secret starts empty");
  check(!(await page.content()).includes(secret), "the page holds the secret");
  await page.context().close();
  const vault = await open({ token: "vault", hash: "#/ns/keys/config/db/password" });
  await vault.getByLabel("Value of db/password").filter({ hasText: "Secret: hidden" }).waitFor();
  check(!(await vault.content()).includes(secret), "the page holds the secret before it is asked for");
  await vault.getByRole("button", { name: "Reveal secret" }).click();
  await vault.getByLabel("Value of db/password").filter({ hasText: secret }).waitFor();
  await shot(vault, "secret-revealed");
  await vault.context().close();
});

test("schemas: an edit is checked before it is saved", async () => {
  const page = await open({ token: "admin", hash: "#/ns/prod/schemas" });
  await page.getByRole("button", { name: "Edit database.*" }).click();
  const text = page.getByLabel("JSON Schema");
  const problems = page.getByRole("list", { name: "Schema problems" });
  const save = page.getByRole("button", { name: "Save schema" });
  await text.fill('{"type": 5}');
  await problems.filter({ hasText: "invalid JSON Schema" }).waitFor();
  check(await save.isDisabled(), "an invalid schema can be saved");
  // Stored database.config has pool_size 30: a minimum of 50 fails it.
  await text.fill('{"type": "object", "properties": {"pool_size": {"type": "integer", "minimum": 50}}}');
  await problems.filter({ hasText: "database.config" }).waitFor();
  check(await save.isDisabled(), "a schema stored values fail can be saved");
  await text.fill('{"type": "object", "required": ["url"], "properties": {"pool_size": {"type": "integer", "minimum": 2}}}');
  await page.waitForFunction(() => ![...document.querySelectorAll("button")].find((b) => b.textContent === "Save schema")?.disabled);
  await save.click();
  await page.getByLabel("Schema database.*").filter({ hasText: '"minimum": 2' }).waitFor();
  const stored = await rest("GET", "/v1/namespaces/prod/schemas/database.*", "reader");
  check(stored.data.properties.pool_size.minimum === 2, `stored ${JSON.stringify(stored.data)}`);
  await page.context().close();
});

test("11. axe finds no serious or critical violation on the main pages; screenshots", async () => {
  const pages = [
    ["namespaces", ""],
    ["config", "#/ns/prod/config/database.config"],
    ["history", "#/ns/prod/history/database.config"],
    ["flags", "#/ns/prod/flags/new-checkout"],
    ["audit", "#/ns/prod/audit"],
    ["releases", "#/ns/prod/releases"],
    ["requests", "#/ns/prod/requests"],
    ["schemas", "#/ns/prod/schemas"],
  ];
  for (const scheme of ["light", "dark"]) {
    for (const width of [1280, 375]) {
      const page = await open({ token: "admin", scheme, width, height: width === 375 ? 800 : 900, audit: true });
      for (const [name, hash] of pages) {
        await go(page, hash || "#/");
        await page.getByRole("heading", { level: 1 }).first().waitFor();
        await page.waitForLoadState("domcontentloaded");
        await page.waitForTimeout(300);
        const other = await axe(page, `${name} (${scheme}, ${width}px)`);
        if (other.length) console.log(`  ${name} ${scheme} ${width}px: minor or moderate: ${JSON.stringify(other)}`);
        await shot(page, `${name}-${scheme}-${width}`);
      }
      // The editor and the sign-in page too.
      await go(page, "#/ns/prod/config/database.config");
      await page.getByRole("button", { name: "Edit" }).click();
      await page.getByLabel("Value (JSON)").waitFor();
      await axe(page, `editor (${scheme}, ${width}px)`);
      await shot(page, `editor-${scheme}-${width}`);
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.getByLabel("Token").waitFor();
      await axe(page, `sign-in (${scheme}, ${width}px)`);
      await shot(page, `signin-${scheme}-${width}`);
      await page.context().close();
    }
  }
});

test("keyboard alone: sign in, open a value, edit it", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${url}/ui/#/ns/prod/config`);
  await page.getByLabel("Token").waitFor();
  await page.keyboard.type(tokens.ops);
  await page.keyboard.press("Enter");
  await page.getByRole("button", { name: "Sign out" }).waitFor();
  await page.getByLabel("Search names").focus();
  await page.keyboard.type("shared");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "shared.setting", level: 2 }).waitFor();
  await page.getByRole("button", { name: "Edit" }).focus();
  await page.keyboard.press("Enter");
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
  check(focused && focused.startsWith("value"), `focus after Edit is on ${focused}`);
  await context.close();
});

test("13. a change of key order alone is no change: the diff views show what the server's diff routes answer", async () => {
  const name = "order.check";
  const lines = (named) =>
    named
      .flatMap((n) => n.differences)
      .map((d) => {
        const at = d.path || "/";
        if (d.op === "added") return `+ ${at}: ${JSON.stringify(d.value)}`;
        if (d.op === "removed") return `- ${at}: ${JSON.stringify(d.value)}`;
        return `~ ${at}: ${JSON.stringify(d.from)} → ${JSON.stringify(d.to)}`;
      });
  const shown = async (list) => (await list.getByRole("listitem").allTextContents()).map((t) => t.trim());
  const first = await rest("PUT", `/v1/namespaces/prod/config/${name}`, "ops", '{"a": 1, "b": 2}');
  check(first.status === 200, `first write: ${JSON.stringify(first.data)}`);
  const page = await open({ token: "ops", hash: `#/ns/prod/config/${name}` });
  await page.getByRole("button", { name: "Edit" }).click();
  const editor = page.getByLabel("Value (JSON)");
  const changes = page.getByRole("region", { name: "Changes against what is stored" });
  // A real change first, so that what follows answers the reordered value.
  const changed = '{"b": 3, "a": 1}';
  await editor.fill(changed);
  const list = changes.getByRole("list", { name: "Changes" });
  await list.filter({ hasText: "~ /b: 2 → 3" }).waitFor();
  const asked = await rest("POST", "/v1/namespaces/prod/diff", "ops", `{"${name}": ${changed}}`);
  check(JSON.stringify(await shown(list)) === JSON.stringify(lines(asked.data)), `shown ${await shown(list)}, the server ${lines(asked.data)}`);
  const reordered = '{"b": 2, "a": 1}';
  await editor.fill(reordered);
  await changes.getByText("No differences.").waitFor();
  const none = await rest("POST", "/v1/namespaces/prod/diff", "ops", `{"${name}": ${reordered}}`);
  check(none.status === 200 && JSON.stringify(none.data) === "[]", `POST diff: ${none.status} ${JSON.stringify(none.data)}`);
  check((await changes.getByRole("list", { name: "Changes" }).count()) === 0, "a change is listed for a reordered object");
  check(await page.getByRole("button", { name: "Publish" }).isDisabled(), "publish is enabled with nothing to change");
  // Stored reordered, then changed: history compares revisions as the server does.
  const second = await rest("PUT", `/v1/namespaces/prod/config/${name}`, "ops", reordered);
  const third = await rest("PUT", `/v1/namespaces/prod/config/${name}`, "ops", '{"b": 2, "a": 5}');
  check(second.status === 200 && third.status === 200, "the later writes");
  const rev = (r) => r.etag.replace(/"/g, "");
  await go(page, `#/ns/prod/history/${name}`);
  await page.getByRole("heading", { name: `History · ${name}` }).waitFor();
  const compare = page.getByRole("region", { name: "Compare two revisions" });
  const between = compare.getByRole("list", { name: "Differences between the two revisions" });
  await between.filter({ hasText: "~ /a: 1 → 5" }).waitFor();
  const latest = await rest("GET", `/v1/namespaces/prod/diff/${name}?from=${rev(second)}&to=${rev(third)}`, "reader");
  check(JSON.stringify(await shown(between)) === JSON.stringify(lines(latest.data)), `shown ${await shown(between)}, the server ${lines(latest.data)}`);
  await compare.getByLabel("From").selectOption(rev(first));
  await compare.getByLabel("To").selectOption(rev(second));
  await compare.getByText("No differences.").waitFor();
  const same = await rest("GET", `/v1/namespaces/prod/diff/${name}?from=${rev(first)}&to=${rev(second)}`, "reader");
  check(same.status === 200 && JSON.stringify(same.data) === "[]", `GET diff: ${same.status} ${JSON.stringify(same.data)}`);
  await page.context().close();
});

test("14. layers: the origin of each field, an override here, a reset to inherited; an overlay promoted", async () => {
  const put = async (p, token, body) => {
    const r = await rest("PUT", p, token, body);
    check(r.status === 200, `PUT ${p}: ${r.status} ${JSON.stringify(r.data)}`);
  };
  await put("/v1/namespaces/lbase/config/db", "ops", { url: "postgres://base", pool: { size: 10, idle: 2 } });
  await put("/v1/namespaces/lprod/meta", "admin", { extends: ["lbase"] });
  const page = await open({ token: "ops", hash: "#/ns/lprod/config/db" });
  const origins = page.getByRole("region", { name: "Origins of db" });
  await origins.getByRole("row").filter({ hasText: "/pool/size" }).filter({ hasText: "lbase" }).waitFor();
  await shot(page, "layers-origins");
  // Override one field here: the editor starts from lprod's own layer.
  await page.getByRole("button", { name: "Override here" }).click();
  await page.getByLabel("Value (JSON)").fill('{"pool": {"size": 40}}');
  await page.waitForFunction(() => ![...document.querySelectorAll("button")].find((b) => b.textContent === "Publish")?.disabled);
  await page.getByRole("button", { name: "Publish" }).click();
  await origins.getByRole("row").filter({ hasText: "/pool/size" }).filter({ hasText: "lprod" }).waitFor();
  await origins.getByRole("row").filter({ hasText: "/url" }).filter({ hasText: "lbase" }).waitFor();
  await page.getByLabel("Value of db").filter({ hasText: "postgres://base" }).filter({ hasText: '"size": 40' }).waitFor();
  const own = await rest("GET", "/v1/namespaces/lprod/config/db?layer=own", "ops");
  check(JSON.stringify(own.data) === '{"pool":{"size":40}}', `own layer: ${JSON.stringify(own.data)}`);
  const effective = await rest("GET", "/v1/namespaces/lprod/config/db", "ops");
  check(effective.data.pool.size === 40 && effective.data.pool.idle === 2, `effective: ${JSON.stringify(effective.data)}`);
  await shot(page, "layers-overridden");
  // Reset to inherited: lprod's own value goes, lbase's shows through.
  await page.getByRole("button", { name: "Reset to inherited" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Reset" }).click();
  await origins.getByRole("row").filter({ hasText: "/pool/size" }).filter({ hasText: "lbase" }).waitFor();
  const gone = await rest("GET", "/v1/namespaces/lprod/config/db?layer=own", "ops");
  check(gone.status === 404, `own layer after reset: ${gone.status}`);

  // An overlay, promoted from its page: one release, seen without labels.
  await put("/v1/namespaces/lprod/overlays/canary", "ops", { selector: { canary: "true" } });
  await put("/v1/namespaces/lprod/overlays/canary/config/db", "ops", { pool: { size: 99 } });
  const canary = await rest("GET", "/v1/namespaces/lprod/config/db", "ops", undefined, { "X-Cfgd-Labels": "canary=true" });
  check(canary.data.pool.size === 99, `canary sees ${JSON.stringify(canary.data)}`);
  await go(page, "#/ns/lprod/overlays");
  const row = page.getByRole("region", { name: "Overlays" }).getByRole("row").filter({ hasText: "canary=true" });
  await row.waitFor();
  await shot(page, "overlays");
  await row.getByRole("button", { name: "Promote canary" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Promote" }).click();
  await page.getByText("No overlays.").waitFor();
  const after = await rest("GET", "/v1/namespaces/lprod/config/db", "ops");
  check(after.data.pool.size === 99 && after.data.url === "postgres://base", `after promote: ${JSON.stringify(after.data)}`);
  const releases = await rest("GET", "/v1/namespaces/lprod/releases", "ops");
  check(releases.data[0].action === "release.promote", `releases: ${JSON.stringify(releases.data[0])}`);
  await page.context().close();
});

test("15. webhooks and schedules: a webhook added, tested and told of a change; a schedule cancelled", async () => {
  // A receiver in this process that takes every event.
  const got = [];
  const { createServer } = await import("node:http");
  const receiver = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      got.push({ id: req.headers["webhook-id"], signed: /^v1,/.test(req.headers["webhook-signature"] || ""), body: JSON.parse(body) });
      res.writeHead(204).end();
    });
  });
  await new Promise((ok) => receiver.listen(0, "127.0.0.1", ok));
  const hookUrl = `http://127.0.0.1:${receiver.address().port}/in`;
  const page = await open({ token: "admin", hash: "#/ns/hooks/workers" });
  await page.getByText("No webhooks.").waitFor();
  await page.getByLabel("Receiver URL").fill(hookUrl);
  await page.getByLabel("io.cfgd.config.changed").check();
  await page.getByRole("button", { name: "Add webhook" }).click();
  const secret = await page.getByLabel("Signing secret").textContent();
  check(secret.startsWith("whsec_"), `secret shown: ${secret}`);
  const row = page.getByRole("region", { name: "Webhooks" }).getByRole("row").filter({ hasText: hookUrl });
  await row.waitFor();
  const id = await row.getAttribute("data-webhook");
  await row.getByRole("button", { name: `Test ${id}` }).click();
  await page.getByRole("status").filter({ hasText: "Test answered 204" }).waitFor();
  await page.getByRole("region", { name: `Attempts of ${id}` }).getByRole("row").filter({ hasText: "io.cfgd.webhook.test" }).waitFor();
  const put = await rest("PUT", "/v1/namespaces/hooks/config/limit", "ops", "7");
  check(put.status === 200, `PUT: ${put.status}`);
  for (let i = 0; i < 100 && !got.some((g) => g.body.type === "io.cfgd.config.changed"); i++) await page.waitForTimeout(50);
  const change = got.find((g) => g.body.type === "io.cfgd.config.changed");
  check(change && change.signed && change.body.data.names[0].name === "limit", `delivered: ${JSON.stringify(got)}`);
  // A schedule, shown and cancelled here.
  const made = await rest("POST", "/v1/namespaces/hooks/schedules", "ops", { at: "+1h", config: { limit: 9 } });
  check(made.status === 200, `schedule: ${made.status} ${JSON.stringify(made.data)}`);
  const sid = made.data[0].id;
  await go(page, "#/ns/hooks/config");
  await go(page, "#/ns/hooks/workers");
  const srow = page.getByRole("region", { name: "Schedules" }).getByRole("row").filter({ hasText: sid });
  await srow.filter({ hasText: "pending" }).waitFor();
  await shot(page, "workers");
  await srow.getByRole("button", { name: `Cancel ${sid}` }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Cancel schedule" }).click();
  await page.getByRole("region", { name: "Schedules" }).getByRole("row").filter({ hasText: sid }).filter({ hasText: "cancelled" }).waitFor();
  const after = await rest("GET", `/v1/namespaces/hooks/schedules/${sid}`, "ops");
  check(after.data.state === "cancelled", `after cancel: ${JSON.stringify(after.data)}`);
  await shot(page, "workers-cancelled");
  await page.context().close();
  receiver.close();
});

// Against `cfgd dev` (what `make run` starts), only this runs.
const devTests = [
  {
    name: "cfgd dev: the console shows the demo data, no sign-in",
    fn: async () => {
      const page = await open({ hash: "#/ns/demo/config/database.config" });
      await page.getByLabel("Value of database.config").filter({ hasText: "pool_size" }).waitFor();
      await shot(page, "dev-config");
      await go(page, "#/ns/demo/flags/new-checkout");
      await page.getByRole("group", { name: "Rollout" }).waitFor();
      await page.getByRole("button", { name: "Evaluate" }).click();
      await page.getByRole("definition").filter({ hasText: /TARGETING_MATCH|STATIC|DEFAULT|SPLIT/ }).first().waitFor();
      await shot(page, "dev-flags");
      await page.context().close();
    },
  },
];

let failed = 0;
for (const t of process.env.CFGD_DEV ? devTests : tests) {
  if (only && !t.name.includes(only)) continue;
  const started = Date.now();
  try {
    await t.fn();
    console.log(`ok   ${t.name} (${Date.now() - started} ms)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${t.name}: ${e.message.split("\n")[0]}`);
  }
}
if (foreign.length) {
  failed++;
  console.log(`FAIL requests left for another origin: ${foreign.slice(0, 5).join(", ")}`);
}
await browser.close();
console.log(failed ? `${failed} failed` : "all passed");
process.exit(failed ? 1 : 0);
