// A real OpenID provider for cfgd's SSO tests: panva's oidc-provider
// (OpenID Certified), configured here, on a free port of localhost. It
// prints `issuer <url>` once it listens, and runs until it is killed.
//
// Environment:
//   OIDC_REDIRECT  cfgd's /oidc/callback, the one redirect URI of client "cfgd"
//   OIDC_KEYS      a file of signing keys (JWKS with private parts): read if it
//                  exists, else made and written, so that two providers can
//                  share keys (as an issuer's tenants do) and differ only
//                  in the issuer they name
//   OIDC_TLS_CERT, OIDC_TLS_KEY
//                  PEM files: serve HTTPS (the issuer is then https://)
//
// People sign in at its development login page with any password:
//   alice  groups [payments]      email alice@example.com
//   bob    groups [contractors]   email bob@example.com
// Clients:
//   cfgd         authorization code, PKCE required, client_secret_basic
//   ci-payments  client credentials: a JWT access token, groups [payments]
//   ci-short     the same, valid for one second
// Access tokens are JWTs for the resource the request names (`resource`),
// which becomes their audience.

import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import crypto from "node:crypto";
import Provider from "oidc-provider";

const users = {
  alice: { email: "alice@example.com", groups: ["payments"] },
  bob: { email: "bob@example.com", groups: ["contractors"] },
};
const machines = { "ci-payments": ["payments"], "ci-short": ["payments"] };

async function keys(file) {
  if (file && fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, "utf8"));
  const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: "jwk" }), kid: `test-${Date.now()}`, alg: "RS256", use: "sig" };
  const jwks = { keys: [jwk] };
  if (file) fs.writeFileSync(file, JSON.stringify(jwks));
  return jwks;
}

let handler = (_req, res) => res.writeHead(503).end();
const tls = process.env.OIDC_TLS_CERT && { cert: fs.readFileSync(process.env.OIDC_TLS_CERT), key: fs.readFileSync(process.env.OIDC_TLS_KEY) };
const server = tls ? https.createServer(tls, (req, res) => handler(req, res)) : http.createServer((req, res) => handler(req, res));
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const issuer = `${tls ? "https" : "http"}://localhost:${server.address().port}`;

const machine = (client_id) => ({
  client_id,
  client_secret: `${client_id}-secret`,
  grant_types: ["client_credentials"],
  redirect_uris: [],
  response_types: [],
});

const provider = new Provider(issuer, {
  jwks: await keys(process.env.OIDC_KEYS),
  clients: [
    {
      client_id: "cfgd",
      client_secret: "cfgd-client-secret",
      redirect_uris: [process.env.OIDC_REDIRECT],
      grant_types: ["authorization_code"],
      response_types: ["code"],
    },
    machine("ci-payments"),
    machine("ci-short"),
  ],
  pkce: { required: () => true },
  scopes: ["openid", "email", "groups", "api"],
  claims: { openid: ["sub"], email: ["email", "email_verified"], groups: ["groups"] },
  // The claims asked for go in the ID token itself, as many issuers do.
  conformIdTokenClaims: false,
  findAccount: (_ctx, id) => ({
    accountId: id,
    claims: () => ({ sub: id, email: users[id]?.email, email_verified: true, groups: users[id]?.groups ?? [] }),
  }),
  extraTokenClaims: (_ctx, token) => (token.kind === "ClientCredentials" ? { groups: machines[token.clientId] ?? [] } : undefined),
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      getResourceServerInfo: (_ctx, resource, client) => ({
        scope: "api",
        audience: resource,
        accessTokenFormat: "jwt",
        accessTokenTTL: client.clientId === "ci-short" ? 1 : 600,
        jwt: { sign: { alg: "RS256" } },
      }),
    },
  },
  cookies: { keys: ["cfgd-test-provider-cookie-key"] },
});
handler = provider.callback();
console.log(`issuer ${issuer}`);
