// Drives the fake OVH API with the official OVH Node.js client (@ovhcloud/node-ovh), an independent signer.
// node-ovh always speaks TLS and signs 'https://' + host + path without the port; {ip} must be encoded by the caller.
// Usage: node script.js PORT APP_KEY APP_SECRET CONSUMER_KEY  (trust the fake's certificate with NODE_EXTRA_CA_CERTS)
'use strict';
const ovhClient = require('@ovhcloud/node-ovh');

const [port, appKey, appSecret, consumerKey] = process.argv.slice(2);
const host = '127.0.0.1';
const ip = encodeURIComponent('203.0.113.10/32');
const block = encodeURIComponent('198.51.100.16/28');

async function attempt(call) {
  try {
    return { ok: true, value: await call() };
  } catch (e) {
    return { ok: false, error: e.error, message: e.message };
  }
}

async function main() {
  const ovh = ovhClient({ appKey, appSecret, consumerKey, host, port: Number(port) });
  const results = {};
  results.list = await attempt(() => ovh.requestPromised('GET', '/ip', { type: 'failover' }));
  results.ip = await attempt(() => ovh.requestPromised('GET', '/ip/' + ip));
  results.destinations = await attempt(() => ovh.requestPromised('GET', '/ip/' + ip + '/move'));
  results.move = await attempt(() => ovh.requestPromised('POST', '/ip/' + ip + '/move', { to: 'ns-b' }));
  if (results.move.ok) {
    results.task = await attempt(() => ovh.requestPromised('GET', '/ip/' + ip + '/task/' + results.move.value.taskId));
  }
  results.park = await attempt(() => ovh.requestPromised('POST', '/ip/' + block + '/park'));

  // The same call with a wrong application secret: the raw error body is read through the client's debug hook.
  const bodies = [];
  const wrong = ovhClient({
    appKey, appSecret: appSecret + 'x', consumerKey, host, port: Number(port),
    debug: (...args) => { if (args[0] === '[OVH] API response to') { bodies.push(args[args.length - 1]); } },
  });
  results.wrongSecret = await attempt(() => wrong.requestPromised('GET', '/ip/' + ip));
  results.wrongSecret.body = bodies.length > 0 ? JSON.parse(bodies[bodies.length - 1]) : null;
  process.stdout.write(JSON.stringify(results) + '\n');
}

main().catch((e) => { process.stderr.write('node-ovh harness failed: ' + (e && e.stack || JSON.stringify(e)) + '\n'); process.exit(1); });
