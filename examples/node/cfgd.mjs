// The two ways a Node.js service uses cfgd, with no cfgd-specific client:
// live config over Server-Sent Events, and flags through OpenFeature's
// stock OFREP provider.
import { EventSource } from 'eventsource';
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

/**
 * Follows every value under `prefix` in `namespace`: calls `onChange(change)`
 * with {name, kind, value, revision, resync} for each change. EventSource
 * reconnects by itself and sends Last-Event-ID, so cfgd replays what was
 * missed. Returns the EventSource (call close() to stop).
 */
export function watchConfig({ url, token, namespace, prefix = '' }, onChange) {
  const auth = { Authorization: `Bearer ${token}` };
  const source = new EventSource(
    `${url}/v1/namespaces/${namespace}/watch?prefix=${encodeURIComponent(prefix)}`,
    // Only fetch can carry the Authorization header.
    { fetch: (input, init) => fetch(input, { ...init, headers: { ...init.headers, ...auth } }) },
  );
  for (const kind of ['put', 'delete']) {
    source.addEventListener(kind, (event) => onChange(JSON.parse(event.data)));
  }
  return source;
}

/** An OpenFeature client whose flags come from cfgd over OFREP. */
export async function flagClient({ url, token, namespace }) {
  await OpenFeature.setProviderAndWait(
    new OFREPProvider({
      baseUrl: url,
      headers: { Authorization: `Bearer ${token}`, 'X-Cfgd-Namespace': namespace },
    }),
  );
  return OpenFeature.getClient();
}
