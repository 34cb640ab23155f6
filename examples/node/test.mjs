// Run by cfgd's `make test` (tests/examples.rs) against a live cfgd, which
// passes CFGD_URL, CFGD_TOKEN and CFGD_NAMESPACE and has stored the flags
// `dark-mode` (boolean), `banner` (string) and `rollout` (50/50 fractional).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { flagClient, watchConfig } from './cfgd.mjs';

const cfgd = {
  url: process.env.CFGD_URL,
  token: process.env.CFGD_TOKEN,
  namespace: process.env.CFGD_NAMESPACE,
};
assert.ok(cfgd.url && cfgd.token && cfgd.namespace, 'CFGD_URL, CFGD_TOKEN and CFGD_NAMESPACE are set');

async function put(path, body) {
  const res = await fetch(`${cfgd.url}/v1/namespaces/${cfgd.namespace}/${path}`, {
    method: 'PUT',
    headers: { Authorization: `Bearer ${cfgd.token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.equal(res.status, 200, await res.text());
}

async function eventually(check, ms = 20000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) assert.fail('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('the stock OFREP provider resolves cfgd flags, and a flip changes the next result', async () => {
  const flags = await flagClient(cfgd);
  const dark = await flags.getBooleanDetails('dark-mode', false, { targetingKey: 'u1' });
  assert.equal(dark.value, true);
  assert.equal(dark.variant, 'on');
  assert.equal(await flags.getStringValue('banner', 'none', { targetingKey: 'u1', plan: 'pro' }), 'Hi pro');
  assert.equal(await flags.getStringValue('banner', 'none', { targetingKey: 'u1' }), 'Hello');

  const rollout = await flags.getBooleanDetails('rollout', false, { targetingKey: 'user-17' });
  assert.equal(rollout.reason, 'TARGETING_MATCH');
  for (let i = 0; i < 3; i++) {
    assert.equal(await flags.getBooleanValue('rollout', !rollout.value, { targetingKey: 'user-17' }), rollout.value);
  }
  let on = 0;
  for (let i = 0; i < 200; i++) on += (await flags.getBooleanValue('rollout', false, { targetingKey: `user-${i}` })) ? 1 : 0;
  assert.ok(on > 60 && on < 140, `about half on, got ${on}/200`);

  await put('flags/dark-mode', { state: 'ENABLED', variants: { on: true, off: false }, defaultVariant: 'off' });
  await eventually(async () => (await flags.getBooleanValue('dark-mode', true, { targetingKey: 'u1' })) === false);
});

test('an SSE subscriber sees config changes', async () => {
  const seen = [];
  const source = watchConfig({ ...cfgd, prefix: 'app/' }, (change) => seen.push(change));
  try {
    await new Promise((resolve, reject) => {
      source.onopen = resolve;
      source.onerror = (e) => reject(new Error(`SSE: ${e.message ?? e.type}`));
    });
    await put('config/app/limit', 5);
    await put('config/app/limit', 6);
    await eventually(() => seen.length >= 2);
    assert.deepEqual(
      seen.map((c) => [c.name, c.kind, c.value, c.resync]),
      [['app/limit', 'put', 5, false], ['app/limit', 'put', 6, false]],
    );
    assert.ok(seen[1].revision > seen[0].revision);
  } finally {
    source.close();
  }
});
