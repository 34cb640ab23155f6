// OpenFeature's OFREP web provider (@openfeature/ofrep-web-provider), unchanged,
// in Debian's chromium against cfgd, with polling off: it must learn of a
// flag change from the change stream cfgd names in its bulk answer
// (eventStreams). Run by tests/flagd_grpc.rs.
//
// Environment: CFGD_URL, CFGD_TOKEN (a token scoped to the one namespace
// that holds flag "checkout"), CFGD_WRITE_TOKEN, CHROMIUM.

import * as esbuild from "esbuild";
import { chromium } from "playwright-core";

const url = process.env.CFGD_URL;
const token = process.env.CFGD_TOKEN;

// The provider and SDK as a browser would load them: bundled.
const bundle = await esbuild.build({
  stdin: {
    contents: `import { OFREPWebProvider } from "@openfeature/ofrep-web-provider";
               import { OpenFeature, ProviderEvents } from "@openfeature/web-sdk";
               Object.assign(window, { OFREPWebProvider, OpenFeature, ProviderEvents });`,
    resolveDir: new URL(".", import.meta.url).pathname,
  },
  bundle: true,
  write: false,
  format: "iife",
  platform: "browser",
  logLevel: "error",
});
const script = bundle.outputFiles[0].text;

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
let failed = false;
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.log(`  page error: ${e.message}`));
  // A page on cfgd's own origin, so no CORS is involved.
  await page.route(`${url}/ofrep-test.html`, (route) =>
    route.fulfill({ contentType: "text/html", body: `<!doctype html><title>ofrep</title><script>${script}</script>` }),
  );
  await page.goto(`${url}/ofrep-test.html`);
  const before = await page.evaluate(async ({ url, token }) => {
    const provider = new window.OFREPWebProvider({
      baseUrl: url,
      headers: [["Authorization", `Bearer ${token}`]],
      pollInterval: 0,
      changeDetection: "sse",
    });
    await window.OpenFeature.setContext({ targetingKey: "user-1" });
    await window.OpenFeature.setProviderAndWait(provider);
    const client = window.OpenFeature.getClient();
    window.changes = [];
    client.addHandler(window.ProviderEvents.ConfigurationChanged, () => {
      window.changes.push(Date.now());
    });
    window.client = client;
    return client.getBooleanValue("checkout", false);
  }, { url, token });
  if (before !== true) throw new Error(`checkout before: ${before}`);

  // Let the provider open its change stream, then change the flag.
  await page.waitForTimeout(500);
  const flag = await fetch(`${url}/v1/namespaces/prod/flags/checkout`, { headers: { Authorization: `Bearer ${token}` } });
  const definition = { ...(await flag.json()), defaultVariant: "off" };
  const started = Date.now();
  const put = await fetch(`${url}/v1/namespaces/prod/flags/checkout`, {
    method: "PUT",
    headers: { Authorization: `Bearer ${process.env.CFGD_WRITE_TOKEN}`, "If-Match": flag.headers.get("etag") },
    body: JSON.stringify(definition),
  });
  if (put.status !== 200) throw new Error(`PUT answered ${put.status}`);
  await page.waitForFunction(() => window.client.getBooleanValue("checkout", true) === false, null, { timeout: 10000, polling: 20 });
  const seen = Date.now() - started;
  const changes = await page.evaluate(() => window.changes.length);
  console.log(`ok   the OFREP web provider, polling off, saw the change in ${seen} ms (${changes} configuration-changed event(s))`);
  if (changes < 1) throw new Error("no configuration-changed event");
} catch (e) {
  failed = true;
  console.log(`FAIL the OFREP web provider follows cfgd's change stream: ${e.message.split("\n")[0]}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
