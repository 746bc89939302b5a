// XMPP connection: sign-in over WebSocket with BOSH fallback, automatic reconnection, and the stanzas the app uses.
import { Strophe, $iq, $msg, $pres } from 'strophe.js';
import { bareJid, resourceOf } from '../jid';
import type { RosterItem, Show, Subscription } from '../state/roster';
import { parseShow } from '../state/roster';
import type { ChatStateName, HistoryItem } from '../state/chat';
import { parseChatState } from '../state/chat';
import type { IncomingRoomMessage, Invite } from '../state/rooms';
import { sendErrorMessage } from '../state/rooms';
import {
  NS_MUC,
  NS_MUC_OWNER,
  NS_MUC_USER,
  NS_SID,
  parseGroupchat,
  parseInvite,
  parseMucPresence,
  parseRoomArchiveItem,
  stanzaError,
  type MucPresence,
} from './muc';
import { NS_OOB, NS_UPLOAD, formatSize, isSharedFile, parseSlot, parseUploadService, type UploadService } from './upload';

export const NS_ROSTER = 'jabber:iq:roster';
export const NS_CHATSTATES = 'http://jabber.org/protocol/chatstates';
export const NS_RECEIPTS = 'urn:xmpp:receipts';
export const NS_DELAY = 'urn:xmpp:delay';
export const NS_MAM = 'urn:xmpp:mam:2';
export const NS_CARBONS = 'urn:xmpp:carbons:2';
const NS_FORWARD = 'urn:xmpp:forward:0';
const NS_RSM = 'http://jabber.org/protocol/rsm';
const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
const NS_DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';
const NS_DATA = 'jabber:x:data';

/** Where a page of archive results starts (RSM <first/>), and whether nothing older is left. */
export interface ArchivePageInfo {
  first: string | null;
  complete: boolean;
}

export type Transport = 'websocket' | 'bosh';
export type TransportChoice = Transport | 'auto';

export interface Endpoints {
  websocket: string;
  bosh: string;
}

/** SCRAM keys as Strophe reports them after a SCRAM login: a password substitute. */
export interface ScramKeys {
  name: string;
  iter: number;
  salt: string;
  ck: string;
  sk: string;
}

export interface Credentials {
  jid: string;
  password: string | ScramKeys;
}

/** Same-origin endpoints: ws(s)://host/xmpp-websocket and http(s)://host/http-bind. */
export function defaultEndpoints(loc: { protocol: string; host: string }): Endpoints {
  const secure = loc.protocol === 'https:';
  return {
    websocket: `${secure ? 'wss' : 'ws'}://${loc.host}/xmpp-websocket`,
    bosh: `${secure ? 'https' : 'http'}://${loc.host}/http-bind`,
  };
}

export type SignInFailure = 'auth' | 'network' | 'conflict';

export class SignInError extends Error {
  constructor(
    readonly kind: SignInFailure,
    message: string,
  ) {
    super(message);
  }
}

export type ConnectionEvent =
  | { type: 'online'; jid: string; transport: Transport }
  | { type: 'reconnecting'; attempt: number; delayMs: number; reason: string }
  | { type: 'offline'; reason: string; authFailed: boolean }
  | { type: 'roster'; items: RosterItem[] }
  | { type: 'roster-push'; item: RosterItem }
  | { type: 'available'; jid: string; resource: string; show: Exclude<Show, 'offline'>; status: string; priority: number }
  | { type: 'unavailable'; jid: string; resource: string; status: string }
  | { type: 'subscribe'; jid: string }
  | { type: 'subscribed'; jid: string }
  | { type: 'unsubscribed'; jid: string }
  | { type: 'message'; jid: string; id: string; body: string; time: number; file?: boolean }
  | { type: 'receipt'; jid: string; id: string }
  | { type: 'chat-state'; jid: string; state: ChatStateName }
  | { type: 'message-error'; jid: string; id: string; text: string }
  | { type: 'history'; jid: string; items: HistoryItem[]; older?: boolean }
  | { type: 'muc-presence'; presence: MucPresence }
  | { type: 'muc-message'; room: string; message: IncomingRoomMessage }
  | { type: 'muc-subject'; room: string; subject: string; by: string }
  | { type: 'muc-message-error'; room: string; id: string; text: string }
  | { type: 'muc-invite'; invite: Invite };

export type Listener = (e: ConnectionEvent) => void;

const S = Strophe.Status;
type Conn = InstanceType<typeof Strophe.Connection>;

function childText(el: Element, name: string): string {
  for (const c of Array.from(el.children)) if (c.localName === name) return c.textContent ?? '';
  return '';
}

function child(el: Element, name: string, ns: string): Element | null {
  for (const c of Array.from(el.children)) if (c.localName === name && c.namespaceURI === ns) return c;
  return null;
}

/** Human text for a stanza <error/>: its <text/> or its condition name. */
export function errorText(stanza: Element): string {
  const err = Array.from(stanza.children).find((c) => c.localName === 'error');
  if (!err) return 'error';
  const text = childText(err, 'text');
  if (text) return text;
  const cond = Array.from(err.children).find((c) => c.localName !== 'text');
  return cond ? cond.localName.replace(/-/g, ' ') : 'error';
}

function parseRosterItem(el: Element): RosterItem {
  const sub = (el.getAttribute('subscription') ?? 'none') as Subscription | 'remove';
  return {
    jid: bareJid(el.getAttribute('jid') ?? ''),
    name: el.getAttribute('name') ?? '',
    subscription: ['none', 'to', 'from', 'both', 'remove'].includes(sub) ? sub : 'none',
    ask: el.getAttribute('ask') === 'subscribe',
    groups: Array.from(el.children)
      .filter((c) => c.localName === 'group')
      .map((c) => c.textContent ?? ''),
  };
}

export interface ClientOptions {
  endpoints: Endpoints;
  transport?: TransportChoice;
  /** Delays between reconnection attempts, in ms; the last one repeats. */
  backoffMs?: number[];
  /** Log the raw XML traffic to the console (the page's ?debug parameter). */
  debug?: boolean;
}

/** One signed-in account. Emits ConnectionEvents; reconnects by itself when the link drops. */
export class XmppClient {
  private conn: Conn | null = null;
  private listeners = new Set<Listener>();
  private creds: Credentials | null = null;
  private wantOnline = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private attempt = 0;
  private presence: { show: Exclude<Show, 'offline'>; status: string } = { show: 'online', status: '' };
  transport: Transport | null = null;
  jid = '';
  /** Rooms we joined or are joining (XEP-0045): our nickname in each, and whether the room accepted us. */
  private rooms = new Map<string, { nick: string; joined: boolean }>();
  private mucService: string | null = null;
  private uploadService: Promise<UploadService | null> | null = null;

  constructor(private readonly opts: ClientOptions) {}

  /** Events emitted while nobody listened (the roster and first presences arrive during signIn). */
  private backlog: ConnectionEvent[] = [];

  on(l: Listener): () => void {
    this.listeners.add(l);
    const queued = this.backlog.splice(0);
    for (const e of queued) l(e);
    return () => this.listeners.delete(l);
  }

  private emit(e: ConnectionEvent): void {
    if (this.listeners.size === 0) {
      this.backlog.push(e);
      return;
    }
    for (const l of this.listeners) l(e);
  }

  /** SCRAM keys of the last successful login (a password substitute to remember), if SCRAM was used. */
  get scramKeys(): ScramKeys | null {
    return (this.conn?.scram_keys as ScramKeys | null | undefined) ?? null;
  }

  /** Signs in; resolves once online, rejects with a SignInError. */
  async signIn(creds: Credentials): Promise<void> {
    this.cancelReconnect();
    this.creds = creds;
    const choice = this.opts.transport ?? 'auto';
    const order: Transport[] = choice === 'auto' ? ['websocket', 'bosh'] : [choice];
    let lastError: SignInError | null = null;
    for (const t of order) {
      try {
        await this.connectOnce(t);
        this.wantOnline = true;
        this.attempt = 0;
        return;
      } catch (e) {
        lastError = e instanceof SignInError ? e : new SignInError('network', String(e));
        // Only a transport that could not be reached is worth another try with the next one.
        if (lastError.kind !== 'network') break;
      }
    }
    this.creds = null;
    throw lastError ?? new SignInError('network', 'Could not connect');
  }

  private connectOnce(transport: Transport): Promise<void> {
    const creds = this.creds!;
    const url = transport === 'websocket' ? this.opts.endpoints.websocket : this.opts.endpoints.bosh;
    const options: Record<string, unknown> = {};
    // SCRAM needs WebCrypto, which browsers offer only in secure contexts (https, localhost).
    if (!globalThis.crypto?.subtle) options.mechanisms = [Strophe.SASLPlain];
    const conn = new Strophe.Connection(url, options);
    if (this.opts.debug) {
      conn.rawInput = (data: string) => console.debug('XMPP in:', data);
      conn.rawOutput = (data: string) => console.debug('XMPP out:', data);
    }
    this.conn = conn;
    return new Promise((resolve, reject) => {
      let settled = false;
      let lastCondition = '';
      const fail = (kind: SignInFailure, message: string) => {
        if (settled) return;
        settled = true;
        if (this.conn === conn) this.conn = null;
        try {
          conn.reset();
        } catch {
          /* already gone */
        }
        reject(new SignInError(kind, message));
      };
      conn.connect(creds.jid, creds.password as string, (status: number, condition: string | null) => {
        if (condition) lastCondition = condition;
        switch (status) {
          case S.CONNECTED:
            if (settled) return;
            settled = true;
            this.transport = transport;
            this.jid = conn.jid;
            this.setupSession(conn)
              .then(() => {
                this.emit({ type: 'online', jid: conn.jid, transport });
                resolve();
              })
              .catch((e) => {
                conn.disconnect('setup failed');
                reject(new SignInError('network', String(e)));
              });
            break;
          case S.AUTHFAIL:
            if (condition === 'conflict') fail('conflict', 'This resource is already in use');
            else fail('auth', 'Wrong username or password');
            if (settled && this.conn === conn) this.dropped(conn, 'Signed out: authentication failed', true);
            break;
          case S.CONNFAIL:
          case S.ERROR:
          case S.CONNTIMEOUT:
            if (!settled) fail('network', condition || 'Could not connect to the server');
            break;
          case S.DISCONNECTED:
            if (!settled) fail('network', lastCondition || 'Could not connect to the server');
            else this.dropped(conn, lastCondition || 'Connection lost', false);
            break;
        }
      });
    });
  }

  private async setupSession(conn: Conn): Promise<void> {
    conn.addHandler((iq: Element) => this.onRosterPush(conn, iq), NS_ROSTER, 'iq', 'set');
    conn.addHandler((p: Element) => this.onPresence(conn, p), null, 'presence', null);
    conn.addHandler((m: Element) => this.onMessage(conn, m), null, 'message', null);
    // Answer pings and unknown IQ gets/sets so the server and peers do not wait.
    conn.addHandler((iq: Element) => this.onIq(conn, iq), null, 'iq', null);
    const roster = await this.iq(conn, $iq({ type: 'get' }).c('query', { xmlns: NS_ROSTER }));
    const query = child(roster, 'query', NS_ROSTER);
    const items = query ? Array.from(query.children).filter((c) => c.localName === 'item').map(parseRosterItem) : [];
    this.emit({ type: 'roster', items });
    conn.send(this.presenceStanza());
    // Copies of what our other clients send and receive (XEP-0280); a server without it is fine.
    this.iq(conn, $iq({ type: 'set' }).c('enable', { xmlns: NS_CARBONS })).catch(() => undefined);
  }

  /**
   * Runs a XEP-0313 query for the page of `max` messages before archive id `before` (the newest page
   * when it is ''), in our own archive or, with `archive`, in a room's. Calls `onItem` for each result.
   */
  private async mamQuery(
    conn: Conn,
    opts: { archive?: string; with?: string; before: string; max: number },
    onItem: (result: Element, forwarded: Element) => void,
  ): Promise<ArchivePageInfo> {
    const queryid = conn.getUniqueId('mam');
    const archive = opts.archive ?? bareJid(conn.jid);
    const ref = conn.addHandler(
      (m: Element) => {
        const result = child(m, 'result', NS_MAM);
        if (!result || result.getAttribute('queryid') !== queryid) return true;
        // Results come from the archive asked (our own account, or the room), never from others.
        const from = m.getAttribute('from');
        if (from && bareJid(from) !== archive) return true;
        const fwd = child(result, 'forwarded', NS_FORWARD);
        if (fwd) onItem(result, fwd);
        return true;
      },
      NS_MAM,
      'message',
      null,
    );
    try {
      const q = $iq(opts.archive ? { type: 'set', to: opts.archive } : { type: 'set' })
        .c('query', { xmlns: NS_MAM, queryid })
        .c('x', { xmlns: NS_DATA, type: 'submit' })
        .c('field', { var: 'FORM_TYPE', type: 'hidden' })
        .c('value')
        .t(NS_MAM)
        .up()
        .up();
      if (opts.with) q.c('field', { var: 'with' }).c('value').t(opts.with).up().up();
      q.up().c('set', { xmlns: NS_RSM }).c('max').t(String(opts.max)).up().c('before');
      if (opts.before) q.t(opts.before);
      const res = await this.iq(conn, q);
      const fin = child(res, 'fin', NS_MAM);
      const set = fin ? child(fin, 'set', NS_RSM) : null;
      const first = set ? (child(set, 'first', NS_RSM)?.textContent ?? '') : '';
      return { first: first || null, complete: fin?.getAttribute('complete') === 'true' };
    } finally {
      conn.deleteHandler(ref);
    }
  }

  /**
   * Messages exchanged with `jid` from the server's archive (XEP-0313): the last `max`, or with
   * `before` (an archive id) the `max` before it. Emits them as history; resolves with the paging.
   */
  async loadHistory(jid: string, before = '', max = 50): Promise<ArchivePageInfo> {
    const conn = this.need();
    const me = bareJid(conn.jid);
    const items: HistoryItem[] = [];
    const page = await this.mamQuery(conn, { with: jid, before, max }, (result, fwd) => {
      const inner = Array.from(fwd.children).find((c) => c.localName === 'message');
      const delay = child(fwd, 'delay', NS_DELAY);
      const body = inner ? Array.from(inner.children).find((c) => c.localName === 'body') : undefined;
      if (inner && body) {
        const out = bareJid(inner.getAttribute('from') ?? '') === me;
        const stamp = Date.parse(delay?.getAttribute('stamp') ?? '');
        items.push({
          id: inner.getAttribute('id') ?? result.getAttribute('id') ?? '',
          dir: out ? 'out' : 'in',
          body: body.textContent ?? '',
          time: Number.isFinite(stamp) ? stamp : Date.now(),
          ...(isSharedFile(inner) ? { file: true } : {}),
        });
      }
    });
    if (items.length) this.emit({ type: 'history', jid, items, older: before !== '' });
    return page;
  }

  /** A page of a room's archive (XEP-0313 addressed to the room): the `max` messages before `before`. */
  async loadRoomHistory(room: string, before: string, max = 50): Promise<ArchivePageInfo & { items: IncomingRoomMessage[] }> {
    const conn = this.need();
    const items: IncomingRoomMessage[] = [];
    const page = await this.mamQuery(conn, { archive: room, before, max }, (result, fwd) => {
      const m = parseRoomArchiveItem(result, fwd);
      if (m) items.push(m);
    });
    return { ...page, items };
  }

  // --- group chat (XEP-0045) ---------------------------------------------

  /** The server's group chat service: the disco item with a conference/text identity, else conference.<domain>. */
  async discoverMucService(): Promise<string> {
    if (this.mucService) return this.mucService;
    const conn = this.need();
    const domain = conn.domain ?? bareJid(conn.jid).split('@')[1];
    let found: string | null = null;
    try {
      const res = await this.iq(conn, $iq({ type: 'get', to: domain }).c('query', { xmlns: NS_DISCO_ITEMS }), 5000);
      const query = child(res, 'query', NS_DISCO_ITEMS);
      const jids = query ? Array.from(query.children).map((c) => c.getAttribute('jid') ?? '').filter(Boolean) : [];
      const infos = await Promise.all(
        jids.map((j) =>
          this.iq(conn, $iq({ type: 'get', to: j }).c('query', { xmlns: NS_DISCO_INFO }), 5000)
            .then((info) => ({ j, info }))
            .catch(() => null),
        ),
      );
      for (const r of infos) {
        const q = r ? child(r.info, 'query', NS_DISCO_INFO) : null;
        const conference = q && Array.from(q.children).some(
          (c) => c.localName === 'identity' && c.getAttribute('category') === 'conference' && c.getAttribute('type') === 'text',
        );
        if (conference) {
          found = r!.j;
          break;
        }
      }
    } catch {
      /* no discovery: the usual name below */
    }
    this.mucService = found ?? `conference.${domain}`;
    return this.mucService;
  }

  /**
   * Enters a room as `nick` (XEP-0045 §7.2). `since`: ask only for the history after that time (a
   * rejoin after a reconnect). The outcome arrives as muc-presence events.
   */
  joinRoom(room: string, nick: string, opts: { password?: string; since?: number } = {}): void {
    const conn = this.need();
    this.rooms.set(room, { nick, joined: false });
    const p = $pres({ to: `${room}/${nick}` });
    if (this.presence.show !== 'online') p.c('show').t(this.presence.show).up();
    if (this.presence.status) p.c('status').t(this.presence.status).up();
    p.c('x', { xmlns: NS_MUC });
    if (opts.since) p.c('history', { since: new Date(opts.since).toISOString() }).up();
    if (opts.password) p.c('password').t(opts.password).up();
    conn.send(p);
  }

  /** Leaves a room (unavailable presence to our occupant JID). */
  leaveRoom(room: string): void {
    const entry = this.rooms.get(room);
    this.rooms.delete(room);
    if (entry && this.online) this.conn!.send($pres({ to: `${room}/${entry.nick}`, type: 'unavailable' }));
  }

  /**
   * Sends a groupchat message; returns its id (the room reflects it back with the same id). `file`:
   * the body is the URL of a shared file.
   */
  sendGroupchat(room: string, body: string, file = false): string {
    const conn = this.need();
    const id = conn.getUniqueId('muc');
    const m = $msg({ to: room, type: 'groupchat', id }).c('body').t(body).up();
    if (file) m.c('x', { xmlns: NS_OOB }).c('url').t(body).up().up();
    conn.send(m.c('origin-id', { xmlns: NS_SID, id }));
    return id;
  }

  // --- file upload (XEP-0363) ---------------------------------------------

  /** The server's upload service: the disco item with a store/file identity that speaks XEP-0363. */
  discoverUploadService(): Promise<UploadService | null> {
    if (this.uploadService) return this.uploadService;
    const conn = this.need();
    const domain = conn.domain ?? bareJid(conn.jid).split('@')[1];
    const found = (async () => {
      const res = await this.iq(conn, $iq({ type: 'get', to: domain }).c('query', { xmlns: NS_DISCO_ITEMS }), 5000);
      const query = child(res, 'query', NS_DISCO_ITEMS);
      const jids = query ? Array.from(query.children).map((c) => c.getAttribute('jid') ?? '').filter(Boolean) : [];
      const infos = await Promise.all(
        jids.map((j) =>
          this.iq(conn, $iq({ type: 'get', to: j }).c('query', { xmlns: NS_DISCO_INFO }), 5000)
            .then((info) => parseUploadService(j, info))
            .catch(() => null),
        ),
      );
      return infos.find((s) => s !== null) ?? null;
    })();
    // A failed discovery is tried again next time.
    this.uploadService = found.catch(() => {
      this.uploadService = null;
      return null;
    });
    return this.uploadService;
  }

  /** Uploads a file through a slot of the upload service (XEP-0363); resolves with the URL to share. */
  async uploadFile(file: File): Promise<string> {
    const service = await this.discoverUploadService();
    if (!service) throw new Error('This server offers no file upload');
    if (service.maxSize !== null && file.size > service.maxSize) {
      throw new Error(`${file.name} is too large: the limit is ${formatSize(service.maxSize)}`);
    }
    const type = file.type || 'application/octet-stream';
    const res = await this.iq(
      this.need(),
      $iq({ type: 'get', to: service.jid }).c('request', { xmlns: NS_UPLOAD, filename: file.name, size: String(file.size), 'content-type': type }),
    );
    const slot = parseSlot(res);
    const put = await fetch(slot.put, { method: 'PUT', body: file, headers: { ...slot.headers, 'Content-Type': type } });
    if (!put.ok) throw new Error(`The upload of ${file.name} failed (HTTP ${put.status})`);
    return slot.get;
  }

  /** Accepts the default configuration of a room we just created (an instant room, XEP-0045 §10.1.2). */
  private configureInstantRoom(conn: Conn, room: string): void {
    this.iq(conn, $iq({ type: 'set', to: room }).c('query', { xmlns: NS_MUC_OWNER }).c('x', { xmlns: NS_DATA, type: 'submit' })).catch((e) =>
      console.warn(`Could not unlock the new room ${room}: ${e instanceof Error ? e.message : e}`),
    );
  }

  private dropped(conn: Conn, reason: string, authFailed: boolean): void {
    if (this.conn !== conn) return;
    this.conn = null;
    if (!this.wantOnline || authFailed) {
      this.wantOnline = false;
      this.emit({ type: 'offline', reason, authFailed });
      return;
    }
    this.scheduleReconnect(reason);
  }

  private scheduleReconnect(reason: string): void {
    const backoff = this.opts.backoffMs ?? [1000, 2000, 4000, 8000, 15000, 30000];
    const delayMs = backoff[Math.min(this.attempt, backoff.length - 1)];
    this.attempt++;
    this.emit({ type: 'reconnecting', attempt: this.attempt, delayMs, reason });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.reconnect();
    }, delayMs);
  }

  private async reconnect(): Promise<void> {
    if (!this.wantOnline || !this.creds) return;
    const order: Transport[] = this.transport === 'bosh' ? ['bosh'] : ['websocket', 'bosh'];
    if (this.opts.transport && this.opts.transport !== 'auto') order.splice(0, order.length, this.opts.transport);
    let last: SignInError | null = null;
    for (const t of order) {
      try {
        await this.connectOnce(t);
        this.attempt = 0;
        return;
      } catch (e) {
        last = e instanceof SignInError ? e : new SignInError('network', String(e));
        if (last.kind !== 'network') break;
      }
    }
    if (!this.wantOnline) return;
    if (last && last.kind !== 'network') {
      this.wantOnline = false;
      this.emit({ type: 'offline', reason: last.message, authFailed: true });
    } else {
      this.scheduleReconnect(last?.message ?? 'Connection lost');
    }
  }

  /** Retries at once (the "Reconnect now" button). */
  reconnectNow(): void {
    if (!this.reconnectTimer) return;
    this.cancelReconnect();
    void this.reconnect();
  }

  private cancelReconnect(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
  }

  get online(): boolean {
    return !!this.conn?.authenticated && !!this.conn.connected;
  }

  /** Sends unavailable presence and closes the stream. */
  signOut(): void {
    this.wantOnline = false;
    this.cancelReconnect();
    this.creds = null;
    const conn = this.conn;
    this.conn = null;
    if (conn) {
      try {
        conn.send($pres({ type: 'unavailable' }));
        conn.flush();
        conn.disconnect('signed out');
      } catch {
        /* the link is already gone */
      }
    }
    this.emit({ type: 'offline', reason: 'Signed out', authFailed: false });
  }

  private iq(conn: Conn, stanza: ReturnType<typeof $iq>, timeoutMs = 15000): Promise<Element> {
    return new Promise((resolve, reject) => {
      conn.sendIQ(stanza, resolve, (err: Element | null) => reject(new Error(err ? errorText(err) : 'timeout')), timeoutMs);
    });
  }

  private need(): Conn {
    if (!this.conn || !this.online) throw new Error('Not connected');
    return this.conn;
  }

  // --- incoming ----------------------------------------------------------

  private onIq(conn: Conn, iq: Element): boolean {
    const type = iq.getAttribute('type');
    if (type !== 'get' && type !== 'set') return true;
    const payload = iq.firstElementChild;
    if (payload?.namespaceURI === NS_ROSTER) return true; // handled by onRosterPush
    const reply = $iq({ type: payload?.localName === 'ping' ? 'result' : 'error', id: iq.getAttribute('id') ?? '' });
    const from = iq.getAttribute('from');
    if (from) reply.attrs({ to: from });
    if (payload?.localName !== 'ping') {
      reply.c('error', { type: 'cancel' }).c('service-unavailable', { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas' });
    }
    conn.send(reply);
    return true;
  }

  private onRosterPush(conn: Conn, iq: Element): boolean {
    const from = iq.getAttribute('from');
    // RFC 6121 2.1.6: only the server (no from, or our own bare JID) may push.
    if (from && bareJid(from) !== bareJid(conn.jid)) return true;
    const query = child(iq, 'query', NS_ROSTER);
    const item = query ? Array.from(query.children).find((c) => c.localName === 'item') : undefined;
    if (item) this.emit({ type: 'roster-push', item: parseRosterItem(item) });
    conn.send($iq({ type: 'result', id: iq.getAttribute('id') ?? '' }));
    return true;
  }

  private onPresence(conn: Conn, p: Element): boolean {
    const muc = parseMucPresence(p, this.rooms);
    if (muc) {
      const entry = this.rooms.get(muc.room);
      if (muc.self && muc.kind === 'available') {
        if (muc.codes.includes(201)) this.configureInstantRoom(conn, muc.room);
        this.rooms.set(muc.room, { nick: muc.nick, joined: true });
      } else if (muc.self && muc.kind === 'unavailable') {
        // A nickname change (303) keeps us in; anything else (left, kicked, banned) takes us out.
        if (muc.newNick && muc.codes.includes(303)) this.rooms.set(muc.room, { nick: muc.newNick, joined: true });
        else this.rooms.delete(muc.room);
      } else if (muc.kind === 'error' && entry && !entry.joined) {
        this.rooms.delete(muc.room); // the join was refused
      }
      this.emit({ type: 'muc-presence', presence: muc });
      return true;
    }
    const from = p.getAttribute('from') ?? '';
    const jid = bareJid(from);
    const resource = resourceOf(from);
    const type = p.getAttribute('type');
    const status = childText(p, 'status');
    switch (type) {
      case null:
      case '':
        this.emit({
          type: 'available',
          jid,
          resource,
          show: parseShow(childText(p, 'show')),
          status,
          priority: parseInt(childText(p, 'priority') || '0', 10) || 0,
        });
        break;
      case 'unavailable':
      case 'error':
        this.emit({ type: 'unavailable', jid, resource, status: type === 'error' ? errorText(p) : status });
        break;
      case 'subscribe':
        this.emit({ type: 'subscribe', jid });
        break;
      case 'subscribed':
        this.emit({ type: 'subscribed', jid });
        break;
      case 'unsubscribed':
        this.emit({ type: 'unsubscribed', jid });
        break;
    }
    return true;
  }

  private onMessage(conn: Conn, m: Element): boolean {
    const from = m.getAttribute('from') ?? '';
    const jid = bareJid(from || conn.domain || '');
    const id = m.getAttribute('id') ?? '';
    const type = m.getAttribute('type') ?? 'normal';
    if (type === 'error') {
      if (this.rooms.has(jid)) {
        const e = stanzaError(m);
        this.emit({ type: 'muc-message-error', room: jid, id, text: sendErrorMessage(e.condition, e.text) });
      } else {
        this.emit({ type: 'message-error', jid, id, text: errorText(m) });
      }
      return true;
    }
    if (type === 'groupchat') {
      const g = parseGroupchat(m);
      if (g?.kind === 'message') this.emit({ type: 'muc-message', room: g.room, message: g.message });
      else if (g?.kind === 'subject') this.emit({ type: 'muc-subject', room: g.room, subject: g.subject, by: g.by });
      return true;
    }
    if (type === 'headline') return true;
    const invite = parseInvite(m);
    if (invite) {
      this.emit({ type: 'muc-invite', invite });
      return true;
    }
    // A private message from a room occupant (XEP-0045 §7.5): shown in the room, marked private.
    if (child(m, 'x', NS_MUC_USER) && this.rooms.has(jid) && resourceOf(from)) {
      const body = Array.from(m.children).find((c) => c.localName === 'body');
      if (body) {
        this.emit({
          type: 'muc-message',
          room: jid,
          message: {
            stanzaId: '',
            msgId: id,
            nick: resourceOf(from),
            body: body.textContent ?? '',
            time: Date.now(),
            occupantId: '',
            history: false,
            private: true,
            ...(isSharedFile(m) ? { file: true } : {}),
          },
        });
      }
      return true;
    }
    // Carbons (XEP-0280) come from our own bare JID and wrap the real message.
    const carbon = child(m, 'sent', NS_CARBONS) ?? child(m, 'received', NS_CARBONS);
    if (carbon && bareJid(from) === bareJid(conn.jid)) {
      const fwd = child(carbon, 'forwarded', NS_FORWARD);
      const inner = fwd ? Array.from(fwd.children).find((c) => c.localName === 'message') : undefined;
      const body = inner ? Array.from(inner.children).find((c) => c.localName === 'body') : undefined;
      if (inner && body) {
        const sent = carbon.localName === 'sent';
        const peer = bareJid((sent ? inner.getAttribute('to') : inner.getAttribute('from')) ?? '');
        this.emit({
          type: 'history',
          jid: peer,
          items: [
            {
              id: inner.getAttribute('id') ?? '',
              dir: sent ? 'out' : 'in',
              body: body.textContent ?? '',
              time: Date.now(),
              ...(isSharedFile(inner) ? { file: true } : {}),
            },
          ],
        });
      }
      return true;
    }
    const received = child(m, 'received', NS_RECEIPTS);
    if (received) this.emit({ type: 'receipt', jid, id: received.getAttribute('id') ?? '' });
    for (const c of Array.from(m.children)) {
      if (c.namespaceURI === NS_CHATSTATES) {
        const state = parseChatState(c.localName);
        if (state) this.emit({ type: 'chat-state', jid, state });
      }
    }
    const body = child(m, 'body', 'jabber:client') ?? Array.from(m.children).find((c) => c.localName === 'body');
    if (body) {
      const delay = child(m, 'delay', NS_DELAY);
      const stamp = delay ? Date.parse(delay.getAttribute('stamp') ?? '') : NaN;
      this.emit({
        type: 'message',
        jid,
        id,
        body: body.textContent ?? '',
        time: Number.isFinite(stamp) ? stamp : Date.now(),
        ...(isSharedFile(m) ? { file: true } : {}),
      });
      // XEP-0184: acknowledge when asked (and the message has an id to acknowledge).
      if (child(m, 'request', NS_RECEIPTS) && id && from) {
        conn.send($msg({ to: from, id: conn.getUniqueId('receipt') }).c('received', { xmlns: NS_RECEIPTS, id }));
      }
    }
    return true;
  }

  // --- outgoing ----------------------------------------------------------

  private presenceStanza() {
    const p = $pres();
    if (this.presence.show !== 'online') p.c('show').t(this.presence.show).up();
    if (this.presence.status) p.c('status').t(this.presence.status).up();
    return p;
  }

  setPresence(show: Exclude<Show, 'offline'>, status: string): void {
    this.presence = { show, status };
    if (!this.online) return;
    this.conn!.send(this.presenceStanza());
    // Rooms get our presence too (directed presence to our occupant JIDs).
    for (const [room, r] of this.rooms) if (r.joined) this.conn!.send(this.presenceStanza().attrs({ to: `${room}/${r.nick}` }));
  }

  /**
   * Sends a chat message asking for a delivery receipt; returns its id. `file`: the body is the
   * URL of a shared file, also given as its XEP-0066 out-of-band URL.
   */
  sendMessage(to: string, body: string, file = false): string {
    const conn = this.need();
    const id = conn.getUniqueId('msg');
    const m = $msg({ to, type: 'chat', id }).c('body').t(body).up();
    if (file) m.c('x', { xmlns: NS_OOB }).c('url').t(body).up().up();
    conn.send(m.c('active', { xmlns: NS_CHATSTATES }).up().c('request', { xmlns: NS_RECEIPTS }));
    return id;
  }

  sendChatState(to: string, state: ChatStateName): void {
    if (!this.online) return;
    this.conn!.send($msg({ to, type: 'chat' }).c(state, { xmlns: NS_CHATSTATES }));
  }

  /** Adds a contact to the roster and asks to see their presence. */
  async addContact(jid: string, name = ''): Promise<void> {
    const conn = this.need();
    const item: Record<string, string> = { jid };
    if (name) item.name = name;
    await this.iq(conn, $iq({ type: 'set' }).c('query', { xmlns: NS_ROSTER }).c('item', item));
    conn.send($pres({ to: jid, type: 'subscribe' }));
  }

  /** Accepts a subscription request, and asks for theirs back when we do not have it. */
  acceptSubscription(jid: string, subscribeBack: boolean): void {
    const conn = this.need();
    conn.send($pres({ to: jid, type: 'subscribed' }));
    if (subscribeBack) conn.send($pres({ to: jid, type: 'subscribe' }));
  }

  denySubscription(jid: string): void {
    this.need().send($pres({ to: jid, type: 'unsubscribed' }));
  }

  async removeContact(jid: string): Promise<void> {
    const conn = this.need();
    await this.iq(conn, $iq({ type: 'set' }).c('query', { xmlns: NS_ROSTER }).c('item', { jid, subscription: 'remove' }));
  }
}
