// Flag evaluation throughput of OpenFeature's reference flagd evaluator, for
// cfgd's benchmark (benches/flag_eval.rs): single-threaded, the same flag
// and contexts as the Rust engines.
//
// stdin:  {"document": "<flagd JSON text>", "contexts": [{…}], "rounds": n, "perRound": n}
// stdout: {"ns": <median ns per evaluation>, "variants": [one per context]}
import { FlagdCore } from '@openfeature/flagd-core';

const silent = { error() {}, warn() {}, info() {}, debug() {} };

let input = '';
for await (const chunk of process.stdin) input += chunk;
const { document, contexts, rounds, perRound } = JSON.parse(input);

const core = new FlagdCore(undefined, silent);
core.setConfigurations(document);
const evaluate = (context) => core.resolve('boolean', 'f', false, context, silent);

const variants = contexts.map((c) => evaluate(c).variant ?? null);
// Warm up the JIT before timing, as criterion warms up the Rust side.
for (let i = 0; i < perRound; i++) evaluate(contexts[i % contexts.length]);
const times = [];
let sink = 0;
for (let r = 0; r < rounds; r++) {
  const start = process.hrtime.bigint();
  for (let i = 0; i < perRound; i++) {
    if (evaluate(contexts[i % contexts.length]).value) sink++;
  }
  times.push(Number(process.hrtime.bigint() - start) / perRound);
}
times.sort((a, b) => a - b);
process.stdout.write(JSON.stringify({ ns: times[Math.floor(times.length / 2)], variants, sink }));
