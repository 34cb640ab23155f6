// The Node side of `cargo bench -p cfgd-bench --bench flagd` (see
// bench/benches/flagd.rs): stock flagd providers and SSE clients against one
// cfgd. Prints one JSON line of results last.

import fs from "node:fs";
import { OpenFeature, ProviderEvents } from "@openfeature/server-sdk";
import { FlagdProvider } from "@openfeature/flagd-provider";

const url = process.env.CFGD_URL;
const [host, port] = process.env.CFGD_GRPC.split(":");
const CLIENTS = 100;
const ROUNDS = 20;

const log = (text) => process.stderr.write(`${text}\n`);
const rssKb = () => Number(fs.readFileSync(`/proc/${process.env.CFGD_PID}/status`, "utf8").match(/VmRSS:\s+(\d+)/)[1]);

function summary(ms) {
  const sorted = [...ms].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { samples: sorted.length, p50_ms: +at(0.5).toFixed(2), p99_ms: +at(0.99).toFixed(2), max_ms: +sorted[sorted.length - 1].toFixed(2) };
}

async function providers(kind, n) {
  const clients = [];
  for (let i = 0; i < n; i++) {
    const domain = `${kind}-${i}`;
    const p = new FlagdProvider({ host, port: Number(port), tls: false, resolverType: kind, cache: kind === "rpc" ? "lru" : "disabled" });
    await OpenFeature.setProviderAndWait(domain, p);
    clients.push(OpenFeature.getClient(domain));
  }
  return clients;
}

/** n SSE streams of flag changes; calls onEvent(i) per event. */
async function sseClients(n, onEvent) {
  const controllers = [];
  for (let i = 0; i < n; i++) {
    const controller = new AbortController();
    controllers.push(controller);
    const res = await fetch(`${url}/v1/namespaces/bench/watch?section=flags`, { signal: controller.signal });
    (async () => {
      const decoder = new TextDecoder();
      let buffer = "";
      try {
        for await (const chunk of res.body) {
          buffer += decoder.decode(chunk, { stream: true });
          let at;
          while ((at = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, at);
            buffer = buffer.slice(at + 2);
            if (block.includes("data:")) onEvent(i);
          }
        }
      } catch {}
    })();
  }
  return controllers;
}

let definition = (await (await fetch(`${url}/v1/namespaces/bench/flags/toggle`)).json());

log(`connecting ${CLIENTS} in-process, ${CLIENTS} RPC providers and ${CLIENTS} SSE streams`);
const inproc = await providers("in-process", CLIENTS);
const rpc = await providers("rpc", CLIENTS);
const delays = { "in-process": [], rpc: [], sse: [] };
let round = null;
const saw = (kind) => () => {
  if (round) {
    delays[kind].push(performance.now() - round.start);
    round.left--;
    if (round.left === 0) round.done();
  }
};
for (const c of inproc) c.addHandler(ProviderEvents.ConfigurationChanged, saw("in-process"));
for (const c of rpc) c.addHandler(ProviderEvents.ConfigurationChanged, saw("rpc"));
const sse = await sseClients(CLIENTS, saw("sse"));
await new Promise((r) => setTimeout(r, 500));

for (let i = 0; i < ROUNDS; i++) {
  definition = { ...definition, defaultVariant: definition.defaultVariant === "on" ? "off" : "on" };
  // Timed from the moment the write is sent: the PUT's own time (HTTP,
  // the etcd transaction) is in every figure.
  const finished = new Promise((done) => (round = { start: performance.now(), left: 3 * CLIENTS, done }));
  const put = await fetch(`${url}/v1/namespaces/bench/flags/toggle`, { method: "PUT", body: JSON.stringify(definition) });
  if (put.status !== 200) throw new Error(`PUT ${put.status}`);
  await Promise.race([finished, new Promise((_, no) => setTimeout(() => no(new Error(`round ${i}: ${round.left} events missing after 30 s`)), 30000))]);
  round = null;
  await new Promise((r) => setTimeout(r, 100));
}
for (const c of sse) c.abort();
const propagation = Object.fromEntries(Object.entries(delays).map(([k, v]) => [k, summary(v)]));
log(`propagation: ${JSON.stringify(propagation)}`);

// Resolve throughput, the same concurrency both ways, on one flag.
async function throughput(call, total, concurrency) {
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < total) await call();
    }),
  );
  return +(total / ((performance.now() - start) / 1000)).toFixed(0);
}
const direct = new FlagdProvider({ host, port: Number(port), tls: false, resolverType: "rpc", cache: "disabled" });
await OpenFeature.setProviderAndWait("rpc-direct", direct);
const rpcClient = OpenFeature.getClient("rpc-direct");
const TOTAL = 4000;
const CONCURRENCY = 16;
const grpcRate = await throughput(() => rpcClient.getBooleanValue("toggle", false, { targetingKey: "u1" }), TOTAL, CONCURRENCY);
const ofrepRate = await throughput(
  () =>
    fetch(`${url}/ofrep/v1/evaluate/flags/toggle`, {
      method: "POST",
      headers: { "X-Cfgd-Namespace": "bench", "Content-Type": "application/json" },
      body: '{"context":{"targetingKey":"u1"}}',
    }).then((r) => r.json()),
  TOTAL,
  CONCURRENCY,
);
log(`resolve: gRPC ${grpcRate}/s, OFREP ${ofrepRate}/s`);

// Memory per sync stream: the server's RSS around 500 more in-process providers.
const before = rssKb();
const more = await providers("in-process-mem", 500);
await new Promise((r) => setTimeout(r, 1000));
const after = rssKb();
log(`memory: ${before} KB -> ${after} KB with 500 more sync streams`);

console.log(
  JSON.stringify({
    clients: CLIENTS,
    rounds: ROUNDS,
    propagation,
    resolve_per_second: { grpc_rpc_provider: grpcRate, ofrep_http: ofrepRate, concurrency: CONCURRENCY, total: TOTAL },
    memory: { streams: more.length, rss_before_kb: before, rss_after_kb: after, kb_per_stream: +((after - before) / more.length).toFixed(1) },
  }),
);
await OpenFeature.close();
process.exit(0);
