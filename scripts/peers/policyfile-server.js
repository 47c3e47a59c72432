// node's `policyfile` package (npm) as a Flash socket policy server, for
// scripts/bench.sh. Install it with scripts/peers-setup.sh.
//
//   node scripts/peers/policyfile-server.js PORT
//
// Listens on PORT (all addresses) with the package's defaults (it allows
// every domain to every port) and prints "listening on 127.0.0.1:PORT" on
// stderr once ready. Like nginx's `return`, the package writes its policy as
// soon as a connection is accepted, without reading the request.
'use strict';

const path = require('path');
const events = require('events');

// policyfile 0.0.x copies methods from process.EventEmitter, which newer
// Node releases no longer provide.
if (!process.EventEmitter) {
  process.EventEmitter = events.EventEmitter;
}

const policyfile = require(path.join(__dirname, 'node_modules', 'policyfile'));

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write('usage: node policyfile-server.js PORT\n');
  process.exit(2);
}

const server = policyfile.createServer({ log: false });
server.listen(port, () => {
  process.stderr.write(`listening on 127.0.0.1:${port}\n`);
});
