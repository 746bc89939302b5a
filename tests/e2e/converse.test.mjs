// Compatibility test: Converse.js (a third-party web client, from npm) chats through Rookery's WebSocket endpoint with a slixmpp client.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createReadStream, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RookeryServer } from './lib/server.mjs';
import { launchBrowser, newUserPage, screenshot } from './lib/browser.mjs';
import { Peer } from './lib/peer.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CONVERSE_DIST = path.join(HERE, 'node_modules', 'converse.js', 'dist');
const TYPES = { '.js': 'text/javascript', '.css': 'text/css', '.json': 'application/json', '.wasm': 'application/wasm', '.html': 'text/html', '.svg': 'image/svg+xml', '.woff2': 'font/woff2', '.woff': 'font/woff', '.ttf': 'font/ttf', '.mp3': 'audio/mpeg', '.ogg': 'audio/ogg', '.png': 'image/png' };

function page(websocketUrl) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>Converse on Rookery</title>
<link rel="stylesheet" href="/dist/converse.min.css"><script type="module" src="/dist/converse.min.js"></script></head>
<body class="converse-fullscreen"><div id="conversejs-bg"></div><script type="module">
converse.plugins.add('rookery-e2e', { initialize() { window.__converse = this._converse; } });
converse.initialize({
  assets_path: '/dist/',
  websocket_url: ${JSON.stringify(websocketUrl)},
  discover_connection_methods: false,
  view_mode: 'fullscreen',
  auto_login: true,
  jid: 'erin@localhost',
  password: 'password123',
  allow_non_roster_messaging: true,
  whitelisted_plugins: ['rookery-e2e'],
  loglevel: 'warn',
  play_sounds: false,
  show_controlbox_by_default: true,
});
</script></body></html>`;
}

/** Serves the test page and Converse's dist from node_modules on a loopback port (a different origin than Rookery). */
function staticServer(websocketUrl) {
  const srv = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end(page(websocketUrl));
    }
    if (url.pathname.startsWith('/dist/')) {
      const file = path.join(CONVERSE_DIST, path.normalize(url.pathname.slice(6)).replace(/^(\.\.[/\\])+/, ''));
      if (file.startsWith(CONVERSE_DIST) && existsSync(file) && statSync(file).isFile()) {
        res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
        return createReadStream(file).pipe(res);
      }
    }
    res.writeHead(404).end();
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}

let server, browser, peer, web;

before(async () => {
  server = await RookeryServer.start({ name: 'converse' });
  await server.addUser('erin@localhost', 'password123');
  await server.addUser('frank@localhost', 'password123');
  peer = await Peer.start({ jid: 'frank@localhost', password: 'password123', port: server.c2sPort });
  web = await staticServer(server.websocketUrl);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await peer?.stop();
  web?.close();
  await server?.stop();
});

test('Converse.js signs in over WebSocket and exchanges messages with slixmpp', async () => {
  const p = await newUserPage(browser, 'converse', { quiet: true });
  await p.goto(`http://127.0.0.1:${web.address().port}/`);
  await p.waitForFunction(() => window.__converse?.api?.connection?.connected?.() === true, null, { timeout: 30000 });
  await p.evaluate(() => window.__converse.api.chats.open('frank@localhost', {}, true));
  await p.locator('converse-chats textarea.chat-textarea').first().waitFor();
  // The peer starts a conversation; Converse shows it.
  peer.command({ cmd: 'send', to: 'erin@localhost', body: 'Hi Erin, frank here' });
  await p.locator('.chat-msg__text').filter({ hasText: 'Hi Erin, frank here' }).waitFor({ timeout: 20000 });
  // Erin answers through Converse's own composer; the peer receives it and echoes it back.
  const textarea = p.locator('converse-chats textarea.chat-textarea').first();
  await textarea.fill('Hello Frank from Converse');
  await textarea.press('Enter');
  const got = await peer.waitFor((e) => e.event === 'message' && e.body === 'Hello Frank from Converse', 20000, "Converse's message");
  assert.equal(got.from, 'erin@localhost');
  await p.locator('.chat-msg__text').filter({ hasText: 'echo: Hello Frank from Converse' }).waitFor({ timeout: 20000 });
  await screenshot(p, '11-converse');
});
