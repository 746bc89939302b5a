// Test fixture: runs a Rookery server on free loopback ports with its own config and data dir, serving the built web app.
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, openSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const WEB_DIST = path.join(REPO, 'web', 'dist');
export const ARTIFACTS = path.join(REPO, 'test-artifacts', 'e2e');
const run = promisify(execFile);

export function rookeryBin() {
  const bin = process.env.ROOKERY_BIN || 'target/debug/rookery';
  return path.isAbsolute(bin) ? bin : path.join(REPO, bin);
}

/** n distinct free TCP ports on 127.0.0.1. */
export async function freePorts(n) {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => resolve(s));
    })),
  );
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

function canConnect(port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.once('connect', () => { sock.destroy(); resolve(true); });
    sock.once('error', () => resolve(false));
  });
}

/** The environment for Rookery: without our own ROOKERY_* variables, which it would read as config overrides. */
function serverEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ROOKERY_')) env[k] = v;
  env.RUST_LOG ??= 'info';
  env.NO_COLOR = '1';
  return env;
}

export class RookeryServer {
  static async start(opts = {}) {
    const s = new RookeryServer(opts);
    await s.start();
    return s;
  }

  constructor({ registration = true, name = 'rookery', admins = [] } = {}) {
    this.bin = rookeryBin();
    if (!existsSync(this.bin)) throw new Error(`ROOKERY_BIN ${this.bin} does not exist: build the server first`);
    if (!existsSync(path.join(WEB_DIST, 'index.html'))) throw new Error(`${WEB_DIST} is not built: npm --prefix web run build`);
    this.dir = mkdtempSync(path.join(tmpdir(), `rookery-e2e-${name}-`));
    this.configPath = path.join(this.dir, 'rookery.toml');
    this.logPath = path.join(this.dir, 'rookery.log');
    this.registration = registration;
    this.admins = admins;
    this.domain = 'localhost';
  }

  async writeConfig() {
    if (!this.httpPort) [this.c2sPort, this.tlsPort, this.httpPort] = await freePorts(3);
    writeFileSync(
      this.configPath,
      [
        'hosts = ["localhost"]',
        `data_dir = ${JSON.stringify(path.join(this.dir, 'data'))}`,
        `admins = ${JSON.stringify(this.admins)}`,
        '[listen]',
        `c2s = ["127.0.0.1:${this.c2sPort}"]`,
        `c2s_direct_tls = ["127.0.0.1:${this.tlsPort}"]`,
        `http = ["127.0.0.1:${this.httpPort}"]`,
        '[http]',
        // The web root is set in the file: ROOKERY_* variables are config overrides to Rookery.
        `web_root = ${JSON.stringify(WEB_DIST)}`,
        '[registration]',
        `allow = ${this.registration}`,
        // Tests register several accounts from one address.
        'max_per_ip_per_hour = 0',
        // The SOCKS5 proxy on a port of its own choosing (tests run servers side by side).
        '[modules.proxy65]',
        'listen = "127.0.0.1:0"',
        '',
      ].join('\n'),
    );
  }

  get url() {
    return `http://localhost:${this.httpPort}`;
  }

  get websocketUrl() {
    return `ws://localhost:${this.httpPort}/xmpp-websocket`;
  }

  async start(timeoutMs = 30000) {
    await this.writeConfig();
    const log = openSync(this.logPath, 'a');
    this.proc = spawn(this.bin, ['serve', '--config', this.configPath], {
      cwd: this.dir,
      env: serverEnv(),
      stdio: ['ignore', log, log],
    });
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, sig) => resolve(code ?? sig)));
    const deadline = Date.now() + timeoutMs;
    for (const port of [this.httpPort, this.c2sPort]) {
      while (!(await canConnect(port))) {
        if (this.proc.exitCode !== null) throw new Error(`rookery exited (${this.proc.exitCode}) during startup:\n${this.logTail()}`);
        if (Date.now() > deadline) throw new Error(`rookery did not listen on ${port}:\n${this.logTail()}`);
        await new Promise((r) => setTimeout(r, 50)); // polling a port, not waiting on app behaviour
      }
    }
  }

  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 10000);
    await this.exited;
    clearTimeout(timer);
  }

  async addUser(jid, password) {
    await run(this.bin, ['--config', this.configPath, 'user', 'add', jid, password], { env: serverEnv(), cwd: this.dir });
  }

  logTail(lines = 60) {
    try {
      return readFileSync(this.logPath, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }
}
