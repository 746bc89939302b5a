// Test fixture: a slixmpp client (tests/e2e/peer.py) on the server's TCP c2s port, driven over JSON lines.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { REPO } from './server.mjs';

const VENV_PY = path.join(REPO, '.venv', 'bin', 'python');

/** .venv with slixmpp (scripts/test normally creates it; made here when missing). */
export function ensureVenv() {
  if (existsSync(VENV_PY)) {
    try {
      execFileSync(VENV_PY, ['-c', 'import slixmpp'], { stdio: 'ignore' });
      return VENV_PY;
    } catch {
      /* install below */
    }
  } else {
    execFileSync('python3', ['-m', 'venv', path.join(REPO, '.venv')], { stdio: 'inherit' });
  }
  const req = path.join(REPO, 'tests', 'interop', 'requirements.txt');
  execFileSync(VENV_PY, ['-m', 'pip', 'install', '-q', ...(existsSync(req) ? ['-r', req] : ['slixmpp'])], { stdio: 'inherit' });
  return VENV_PY;
}

export class Peer {
  static async start({ jid, password, port }) {
    const p = new Peer(jid, password, port);
    await p.waitFor((e) => e.event === 'ready', 30000, 'session start');
    return p;
  }

  constructor(jid, password, port) {
    this.jid = jid;
    this.events = [];
    this.waiters = [];
    this.stderr = '';
    this.proc = spawn(ensureVenv(), [path.join(REPO, 'tests', 'e2e', 'peer.py'), jid, password, String(port)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.proc.stderr.on('data', (d) => (this.stderr = (this.stderr + d).slice(-8000)));
    readline.createInterface({ input: this.proc.stdout }).on('line', (line) => {
      let e;
      try {
        e = JSON.parse(line);
      } catch {
        return;
      }
      this.events.push(e);
      for (const w of this.waiters.slice()) if (w.pred(e)) w.resolve(e);
    });
    this.exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.once('exit', (code) => {
      for (const w of this.waiters.slice()) w.reject(new Error(`peer ${jid} exited (${code}) while waiting for ${w.what}\n${this.stderr}`));
    });
  }

  /** Resolves with the first event (past or future) matching pred. */
  waitFor(pred, timeoutMs = 15000, what = 'event') {
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = { pred, what };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`peer ${this.jid}: no ${what} within ${timeoutMs} ms; events: ${JSON.stringify(this.events.slice(-10))}\n${this.stderr}`));
      }, timeoutMs);
      w.resolve = (e) => { clearTimeout(timer); this.waiters.splice(this.waiters.indexOf(w), 1); resolve(e); };
      w.reject = (e) => { clearTimeout(timer); reject(e); };
      this.waiters.push(w);
    });
  }

  command(cmd) {
    this.proc.stdin.write(JSON.stringify(cmd) + '\n');
  }

  async stop() {
    if (this.proc.exitCode !== null) return;
    this.command({ cmd: 'quit' });
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}
