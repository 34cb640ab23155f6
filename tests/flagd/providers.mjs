// OpenFeature's stock flagd provider for Node (@openfeature/flagd-provider),
// unchanged, against cfgd's gRPC listener: in-process (flagd.sync.v1) and
// RPC (flagd.evaluation.v2). Run by tests/flagd_grpc.rs with a real cfgd and
// etcd.
//
// Environment: CFGD_GRPC (host:port), CFGD_URL (cfgd's HTTP, for its own
// evaluator over OFREP), CFGD_TOKEN (a token that may read every
// namespace), CFGD_CFGCTL and CFGD_ETCD (cfgctl and the etcd endpoints),
// CFGD_TESTBED ("1" when the flagd-testbed flags are loaded in namespace
// "testbed").

import { execFileSync, spawn } from "node:child_process";
import net from "node:net";
import readline from "node:readline";
import { OpenFeature, ProviderEvents } from "@openfeature/server-sdk";
import { FlagdProvider } from "@openfeature/flagd-provider";

const [host, port] = process.env.CFGD_GRPC.split(":");
const url = process.env.CFGD_URL;
const token = process.env.CFGD_TOKEN;
const failures = [];

function check(ok, what) {
  if (!ok) throw new Error(what);
}

function cfgctl(...args) {
  return cfgctlWith(undefined, ...args);
}

function cfgctlWith(input, ...args) {
  return execFileSync(process.env.CFGD_CFGCTL, ["--endpoints", process.env.CFGD_ETCD, ...args], { encoding: "utf8", input });
}

/** cfgd's own evaluator, over OFREP: the reference the providers must match. */
async function ofrep(namespace, key, context) {
  const res = await fetch(`${url}/ofrep/v1/evaluate/flags/${encodeURIComponent(key)}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "X-Cfgd-Namespace": namespace, "Content-Type": "application/json" },
    body: JSON.stringify({ context }),
  });
  return { status: res.status, body: await res.json() };
}

async function provider(domain, options) {
  const p = new FlagdProvider({ host, port: Number(port), tls: false, cache: "disabled", ...options });
  await OpenFeature.setProviderAndWait(domain, p);
  return OpenFeature.getClient(domain);
}

/** Waits for the next `event` on `client`, for at most `ms`. */
function next(client, event, ms = 15000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    const handler = (details) => {
      clearTimeout(timer);
      client.removeHandler(event, handler);
      resolve(details);
    };
    client.addHandler(event, handler);
  });
}

/** JSON with object keys sorted: protobuf Structs do not keep key order. */
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object")
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`)
      .join(",")}}`;
  return JSON.stringify(value);
}

/** The caller's default for a flag with these variants. */
function defaultFor(variants) {
  const values = Object.values(variants);
  if (values.length && values.every((v) => typeof v === "boolean")) return false;
  if (values.length && values.every((v) => typeof v === "string")) return "default";
  if (values.length && values.every((v) => typeof v === "number")) return -1;
  return {};
}

/** Evaluates `key` with the typed call that fits its default. */
async function details(client, key, fallback, context) {
  if (typeof fallback === "boolean") return client.getBooleanDetails(key, fallback, context);
  if (typeof fallback === "string") return client.getStringDetails(key, fallback, context);
  if (typeof fallback === "number") return client.getNumberDetails(key, fallback, context);
  return client.getObjectDetails(key, fallback, context);
}

const contexts = [
  {},
  { targetingKey: "user-1" },
  { targetingKey: "user-2", email: "ballmer@macrosoft.com" },
  { targetingKey: "user-3", color: "yellow", version: "1.2.3", age: 30, customer: true },
  { targetingKey: "user-4", email: "someone@faas.com", fn: "yellow", lang: "de", id: 42 },
];

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

test("in-process and RPC providers give cfgd's answers for every testbed flag", async () => {
  if (process.env.CFGD_TESTBED !== "1") {
    console.log("  notice: ../shared/conformance/flagd-testbed is absent; skipped");
    return;
  }
  const flags = JSON.parse(await (await fetch(`${url}/v1/namespaces/testbed/flagd.json`, { headers: { Authorization: `Bearer ${token}` } })).text()).flags;
  const inproc = await provider("inproc-testbed", { resolverType: "in-process", selector: "flagSetId=testbed" });
  const rpc = await provider("rpc-testbed", { resolverType: "rpc", selector: "flagSetId=testbed" });
  let compared = 0;
  for (const [key, flag] of Object.entries(flags)) {
    for (const context of contexts) {
      const want = await ofrep("testbed", key, context);
      const fallback = defaultFor(flag.variants || {});
      // OFREP leaves the value out when the caller's default applies
      // (disabled, no default variant); a provider gives that default.
      const value = "value" in want.body ? want.body.value : fallback;
      for (const [mode, client] of [["in-process", inproc], ["rpc", rpc]]) {
        const got = await details(client, key, fallback, context);
        if (want.status !== 200) {
          // cfgd answers an error: the provider must report one too.
          check(got.errorCode, `${mode} ${key} ${JSON.stringify(context)}: cfgd says ${want.body.errorCode}, provider gave ${JSON.stringify(got)}`);
          continue;
        }
        const same =
          canonical(got.value) === canonical(value) &&
          (got.variant ?? null) === (want.body.variant ?? null) &&
          got.reason === want.body.reason;
        check(same, `${mode} ${key} ${JSON.stringify(context)}: cfgd ${JSON.stringify(want.body)}, provider ${JSON.stringify({ value: got.value, variant: got.variant, reason: got.reason, errorCode: got.errorCode })}`);
        compared++;
      }
    }
  }
  console.log(`  ${Object.keys(flags).length} flags × ${contexts.length} contexts: ${compared} answers compared, all equal`);
});

test("cfgctl flag disable reaches an in-process provider as configuration-changed", async () => {
  const client = await provider("inproc-prod", { resolverType: "in-process", selector: "flagSetId=prod" });
  const before = await client.getBooleanDetails("checkout", false, { targetingKey: "u1" });
  check(before.value === true && before.reason === "STATIC", `before: ${JSON.stringify(before)}`);
  const changed = next(client, ProviderEvents.ConfigurationChanged);
  cfgctl("-n", "prod", "flag", "disable", "checkout");
  const event = await changed;
  const after = await client.getBooleanDetails("checkout", false, { targetingKey: "u1" });
  check(after.value === false && after.reason === "DISABLED", `after: ${JSON.stringify(after)} (event ${JSON.stringify(event)})`);
  cfgctl("-n", "prod", "flag", "enable", "checkout");
  await next(client, ProviderEvents.ConfigurationChanged);
  check((await client.getBooleanValue("checkout", false, {})) === true, "enabled again");
  // Only prod's flags came: the testbed's are not there.
  const other = await client.getBooleanDetails("boolean-flag", false, {});
  check(other.errorCode === "FLAG_NOT_FOUND", `another namespace's flag: ${JSON.stringify(other)}`);
});

test("an RPC provider's cache is invalidated by configuration_change", async () => {
  const client = await provider("rpc-cached", { resolverType: "rpc", cache: "lru" });
  const first = await client.getStringDetails("banner", "none", {});
  check(first.value === "hello", `first: ${JSON.stringify(first)}`);
  const cached = await client.getStringDetails("banner", "none", {});
  check(cached.reason === "CACHED", `second read not cached: ${JSON.stringify(cached)}`);
  const changed = next(client, ProviderEvents.ConfigurationChanged);
  cfgctl("-n", "prod", "flag", "rollout", "banner", "--variant", "bye=100");
  const event = await changed;
  check(JSON.stringify(event.flagsChanged || []).includes("banner"), `event: ${JSON.stringify(event)}`);
  const after = await client.getStringDetails("banner", "none", { targetingKey: "u1" });
  check(after.value === "goodbye" && after.reason !== "CACHED", `after: ${JSON.stringify(after)}`);
});

test("a namespace not open to the listener fails with UNAUTHENTICATED", async () => {
  const p = new FlagdProvider({ host, port: Number(port), tls: false, resolverType: "in-process", selector: "flagSetId=closed", fatalStatusCodes: ["UNAUTHENTICATED"] });
  const error = await OpenFeature.setProviderAndWait("closed", p).then(
    () => null,
    (e) => e,
  );
  const client = OpenFeature.getClient("closed");
  const got = await client.getBooleanDetails("secret", false, {});
  const said = `${error?.message || ""} ${got.errorMessage || ""}`;
  check(got.errorCode && /UNAUTHENTICATED|not open/.test(said), `expected UNAUTHENTICATED, got ${JSON.stringify({ error: error?.message, got })}`);
  console.log(`  the in-process provider says: ${said.trim().split("\n")[0]}`);
  // RPC mode: the selector travels as the Flagd-Selector header.
  const rpc = new FlagdProvider({ host, port: Number(port), tls: false, resolverType: "rpc", selector: "flagSetId=closed", cache: "disabled" });
  await OpenFeature.setProviderAndWait("closed-rpc", rpc).catch(() => {});
  const answer = await OpenFeature.getClient("closed-rpc").getBooleanDetails("secret", false, {});
  check(answer.errorCode && /UNAUTHENTICATED|not open/.test(answer.errorMessage || ""), `RPC: ${JSON.stringify(answer)}`);
  console.log(`  the RPC provider says: ${answer.errorCode}: ${(answer.errorMessage || "").split("\n")[0]}`);
});

test("a selector that does not parse is INVALID_ARGUMENT", async () => {
  const p = new FlagdProvider({ host, port: Number(port), tls: false, resolverType: "in-process", selector: "app,flagSetId=prod", fatalStatusCodes: ["INVALID_ARGUMENT"] });
  const error = await OpenFeature.setProviderAndWait("bad-selector", p).then(
    () => null,
    (e) => e,
  );
  const got = await OpenFeature.getClient("bad-selector").getBooleanDetails("checkout", false, {});
  const said = `${error?.message || ""} ${got.errorMessage || ""}`;
  check(got.errorCode && /INVALID_ARGUMENT|flagSetId=NAMESPACE/.test(said), `got ${JSON.stringify({ error: error?.message, got })}`);
});

/** A free TCP port on 127.0.0.1. */
function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Starts our own cfgd on fixed ports; resolves once its gRPC listener is up. */
function startCfgd(httpPort, grpcPort) {
  const child = spawn(process.env.CFGD_BIN, [
    "serve", "--listen", `127.0.0.1:${httpPort}`, "--grpc-listen", `127.0.0.1:${grpcPort}`,
    "--endpoints", process.env.CFGD_ETCD, "--config", process.env.CFGD_SETTINGS,
  ], { stdio: ["ignore", "pipe", "ignore"] });
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      if (line.startsWith("cfgd gRPC")) resolve(child);
    });
    child.on("exit", (code) => reject(new Error(`cfgd exited with ${code}`)));
  });
}

test("a cfgd restart: an in-process provider reconnects and resyncs", async () => {
  const [httpPort, grpcPort] = [await freePort(), await freePort()];
  let cfgd = await startCfgd(httpPort, grpcPort);
  try {
    const p = new FlagdProvider({ host: "127.0.0.1", port: grpcPort, tls: false, resolverType: "in-process", selector: "prod", retryBackoffMs: 200, retryBackoffMaxMs: 1000 });
    await OpenFeature.setProviderAndWait("restart", p);
    const client = OpenFeature.getClient("restart");
    check((await client.getStringValue("banner", "none", {})) !== "none", "banner before the restart");
    // Our own child, by its pid.
    cfgd.kill("SIGKILL");
    await new Promise((r) => cfgd.once("exit", r));
    // Changed while cfgd is down: only a resync after the restart brings it.
    cfgctlWith(JSON.stringify({ state: "ENABLED", variants: { on: true, off: false }, defaultVariant: "on" }), "-n", "prod", "flag", "set", "restarted", "-f", "-");
    cfgd = await startCfgd(httpPort, grpcPort);
    const deadline = Date.now() + 30000;
    let got;
    while (Date.now() < deadline) {
      got = await client.getBooleanDetails("restarted", false, {});
      if (got.value === true) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    check(got.value === true, `after the restart: ${JSON.stringify(got)}`);
  } finally {
    cfgd.kill("SIGKILL");
  }
});

for (const t of tests) {
  const started = Date.now();
  try {
    await t.fn();
    console.log(`ok   ${t.name} (${Date.now() - started} ms)`);
  } catch (e) {
    failures.push(t.name);
    console.log(`FAIL ${t.name}: ${e.message.split("\n")[0]}`);
  }
}
await OpenFeature.close();
console.log(failures.length ? `${failures.length} failed` : "all passed");
process.exit(failures.length ? 1 : 0);
