// A small order service: its page size follows cfgd config live, and its
// new checkout is behind a flag. Run cfgd (`make run` starts `cfgd dev`), then:
//   CFGD_URL=http://127.0.0.1:8080 CFGD_NAMESPACE=demo node service.mjs
import http from 'node:http';
import { flagClient, watchConfig } from './cfgd.mjs';

const cfgd = {
  url: process.env.CFGD_URL ?? 'http://127.0.0.1:8080',
  token: process.env.CFGD_TOKEN ?? '',
  namespace: process.env.CFGD_NAMESPACE ?? 'demo',
};

const config = { 'feature.limits': { max_items: 10 } }; // defaults until cfgd says otherwise
watchConfig(cfgd, (change) => {
  if (change.kind === 'put') config[change.name] = change.value;
  else delete config[change.name];
  console.log(`config ${change.kind} ${change.name} at revision ${change.revision}`);
});
const flags = await flagClient(cfgd);

http
  .createServer(async (req, res) => {
    const user = new URL(req.url, 'http://x').searchParams.get('user') ?? 'anonymous';
    const newCheckout = await flags.getBooleanValue('new-checkout', false, { targetingKey: user });
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ user, newCheckout, maxItems: config['feature.limits']?.max_items }));
  })
  .listen(Number(process.env.PORT ?? 3000), () => console.log('order service on :' + (process.env.PORT ?? 3000)));
