#!/usr/bin/env node
// Signing keys for the test OpenID Provider (provider.mjs).
//
//   node tests/oidc/keys.mjs OUT.json [--alg ES256|RS256] [--kid K] [--add EXISTING.json [--replace]]
//
// Writes OUT.json, a private JWKS `{"keys":[{…private JWK, kid, alg, use:"sig"}]}` (the provider's
// KEYS_FILE), and OUT.json.pem.json, `[{"kid","alg","pem"}]` with each key's PKCS#8 private key in
// PEM, for tests that sign their own tokens (jsonwebtoken's EncodingKey::from_ec_pem /
// from_rsa_pem) — for instance a token with the right key but the wrong issuer.
//
// Key rotation: `--add EXISTING.json` puts a new key first and keeps the existing ones after it
// (the provider signs with the first key of the wanted algorithm and publishes them all); with
// `--replace` the existing ones are dropped. OUT.json may be EXISTING.json itself.
// Prints one JSON line: {"file","pem_file","kids":[…],"new_kid","alg"}.
import { createHash, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';

function usage(msg) {
  if (msg) console.error(`keys.mjs: ${msg}`);
  console.error('usage: node tests/oidc/keys.mjs OUT.json [--alg ES256|RS256] [--kid K] [--add EXISTING.json [--replace]]');
  process.exit(2);
}

const args = process.argv.slice(2);
let out = null;
let alg = 'ES256';
let kid = null;
let add = null;
let replace = false;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const value = () => {
    const v = args[++i];
    if (v === undefined) usage(`${a} needs a value`);
    return v;
  };
  if (a === '--alg') alg = value().toUpperCase();
  else if (a === '--kid') kid = value();
  else if (a === '--add') add = value();
  else if (a === '--replace') replace = true;
  else if (a === '-h' || a === '--help') usage();
  else if (a.startsWith('--')) usage(`unknown option ${a}`);
  else if (out === null) out = a;
  else usage(`unexpected argument ${a}`);
}
if (!out) usage('OUT.json is required');
if (!['ES256', 'RS256'].includes(alg)) usage(`--alg must be ES256 or RS256, not ${alg}`);
if (replace && !add) usage('--replace goes with --add');

/** RFC 7638 thumbprint of the public part, base64url: a stable, unique default kid. */
function thumbprint(jwk) {
  const members = jwk.kty === 'EC' ? ['crv', 'kty', 'x', 'y'] : ['e', 'kty', 'n'];
  const canonical = JSON.stringify(Object.fromEntries(members.map((m) => [m, jwk[m]])));
  return createHash('sha256').update(canonical).digest('base64url');
}

const { privateKey } = alg === 'ES256'
  ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
  : generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 0x10001 });
const raw = privateKey.export({ format: 'jwk' });
const fresh = { ...raw, kid: kid || `${alg.toLowerCase()}-${thumbprint(raw).slice(0, 16)}`, alg, use: 'sig' };

let keys = [fresh];
if (add) {
  let existing;
  try {
    existing = JSON.parse(readFileSync(add, 'utf8'));
  } catch (e) {
    usage(`cannot read ${add}: ${e.message}`);
  }
  const old = Array.isArray(existing) ? existing : existing && existing.keys;
  if (!Array.isArray(old)) usage(`${add} is not a JWKS ({"keys":[…]})`);
  if (old.some((k) => k.kid === fresh.kid)) usage(`kid ${fresh.kid} is already in ${add}`);
  if (!replace) keys = [fresh, ...old];
}

const pems = keys.map((jwk) => {
  if (!jwk.d) throw new Error(`key ${jwk.kid} has no private part`);
  const key = createPrivateKey({ key: jwk, format: 'jwk' });
  return { kid: jwk.kid, alg: jwk.alg, pem: key.export({ type: 'pkcs8', format: 'pem' }) };
});

writeFileSync(out, JSON.stringify({ keys }, null, 2) + '\n', { mode: 0o600 });
writeFileSync(`${out}.pem.json`, JSON.stringify(pems, null, 2) + '\n', { mode: 0o600 });
console.log(JSON.stringify({ file: out, pem_file: `${out}.pem.json`, kids: keys.map((k) => k.kid), new_kid: fresh.kid, alg }));
