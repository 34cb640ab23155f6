// Evaluates cases with OpenFeature's reference flagd evaluator, for cfgd's
// differential test (tests/differential.rs).
//
// stdin:  {"document": "<flagd JSON text>", "cases": [{"key", "type", "default", "context"}]}
// stdout: [{"value", "variant", "reason", "errorCode"}], one per case
import { FlagdCore } from '@openfeature/flagd-core';

const silent = { error() {}, warn() {}, info() {}, debug() {} };

let input = '';
for await (const chunk of process.stdin) input += chunk;
const { document, cases } = JSON.parse(input);

const core = new FlagdCore(undefined, silent);
core.setConfigurations(document);

const results = cases.map(({ key, type, default: fallback, context }) => {
  try {
    const r = core.resolve(type, key, fallback, context, silent);
    return {
      value: r.value === undefined ? null : r.value,
      variant: r.variant ?? null,
      reason: r.reason ?? null,
      errorCode: r.errorCode ?? null,
    };
  } catch (e) {
    // The SDK turns a thrown error into the caller's default with its code.
    return { value: fallback, variant: null, reason: 'ERROR', errorCode: e.code ?? 'GENERAL' };
  }
});
process.stdout.write(JSON.stringify(results));
