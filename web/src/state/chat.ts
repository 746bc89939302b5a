// Chat state: 1:1 conversations, messages with delivery status, unread counts and chat states (pure reducer).

export type Direction = 'in' | 'out';
export type DeliveryStatus = 'sent' | 'delivered' | 'error';
export type ChatStateName = 'active' | 'composing' | 'paused' | 'inactive' | 'gone';

export interface ChatMessage {
  id: string;
  dir: Direction;
  body: string;
  /** Milliseconds since the epoch (the delay stamp for messages stored offline). */
  time: number;
  status: DeliveryStatus;
  error?: string;
  /** The body is the URL of a shared file (XEP-0066). */
  file?: boolean;
}

export interface Conversation {
  jid: string;
  messages: ChatMessage[];
  unread: number;
  /** The contact's last chat state (XEP-0085), null when none was received. */
  theirState: ChatStateName | null;
  /** Paging back through the archive (XEP-0313); null until the first page arrived. */
  archive: { oldest: string | null; complete: boolean; loading: boolean } | null;
}

export interface ChatState {
  conversations: Record<string, Conversation>;
  /** The bare JID of the open conversation. */
  active: string | null;
}

export type ChatAction =
  | { type: 'open'; jid: string }
  | { type: 'close' }
  | { type: 'incoming'; jid: string; id: string; body: string; time: number; seen: boolean; file?: boolean }
  | { type: 'outgoing'; jid: string; id: string; body: string; time: number; file?: boolean }
  | { type: 'receipt'; jid: string; id: string }
  | { type: 'failed'; jid: string; id: string; error: string }
  | { type: 'chat-state'; jid: string; state: ChatStateName }
  | { type: 'seen'; jid: string }
  /** Messages from the archive (XEP-0313) or carbons (XEP-0280): merged, never counted unread. */
  /** `older`: a page from before every known message (goes first among equal times; stamps are in seconds). */
  | { type: 'history'; jid: string; items: HistoryItem[]; older?: boolean }
  /**
   * An archive page was fetched: `first` is its oldest id (RSM), `complete` means nothing is older;
   * `older` when it was asked for with <before>id</before> rather than as the newest page.
   */
  | { type: 'archive-page'; jid: string; first: string | null; complete: boolean; older: boolean }
  | { type: 'archive-loading'; jid: string }
  | { type: 'archive-failed'; jid: string };

/** A message from the archive or a carbon copy. */
export interface HistoryItem {
  id: string;
  dir: Direction;
  body: string;
  time: number;
  file?: boolean;
}

export const emptyChats: ChatState = { conversations: {}, active: null };

function conv(state: ChatState, jid: string): Conversation {
  return state.conversations[jid] ?? { jid, messages: [], unread: 0, theirState: null, archive: null };
}

function put(state: ChatState, c: Conversation): ChatState {
  return { ...state, conversations: { ...state.conversations, [c.jid]: c } };
}

function updateMessage(state: ChatState, jid: string, id: string, f: (m: ChatMessage) => ChatMessage): ChatState {
  const c = state.conversations[jid];
  if (!c) return state;
  const i = c.messages.findIndex((m) => m.id === id && m.dir === 'out');
  if (i < 0) return state;
  const messages = c.messages.slice();
  messages[i] = f(messages[i]);
  return put(state, { ...c, messages });
}

export function chatReducer(state: ChatState, action: ChatAction): ChatState {
  switch (action.type) {
    case 'open': {
      const c = conv(state, action.jid);
      return { ...put(state, { ...c, unread: 0 }), active: action.jid };
    }
    case 'close':
      return { ...state, active: null };
    case 'incoming': {
      const c = conv(state, action.jid);
      if (action.id && c.messages.some((m) => m.dir === 'in' && m.id === action.id)) return state;
      const msg: ChatMessage = { id: action.id, dir: 'in', body: action.body, time: action.time, status: 'delivered' };
      if (action.file) msg.file = true;
      // Keep messages in time order: a delayed (offline) message may be older than the last one.
      const messages = c.messages.slice();
      let i = messages.length;
      while (i > 0 && messages[i - 1].time > msg.time) i--;
      messages.splice(i, 0, msg);
      return put(state, {
        ...c,
        messages,
        unread: action.seen ? 0 : c.unread + 1,
        // A message with a body ends "typing" (XEP-0085: it carries <active/> or nothing).
        theirState: c.theirState === 'composing' || c.theirState === 'paused' ? 'active' : c.theirState,
      });
    }
    case 'outgoing': {
      const c = conv(state, action.jid);
      const msg: ChatMessage = { id: action.id, dir: 'out', body: action.body, time: action.time, status: 'sent' };
      if (action.file) msg.file = true;
      return put(state, { ...c, messages: [...c.messages, msg] });
    }
    case 'receipt':
      return updateMessage(state, action.jid, action.id, (m) =>
        m.status === 'error' ? m : { ...m, status: 'delivered' },
      );
    case 'failed':
      return updateMessage(state, action.jid, action.id, (m) => ({ ...m, status: 'error', error: action.error }));
    case 'chat-state': {
      const c = conv(state, action.jid);
      return put(state, { ...c, theirState: action.state });
    }
    case 'history': {
      const c = conv(state, action.jid);
      const known = (m: { id: string; dir: Direction; body: string; time: number }) =>
        c.messages.some(
          (x) => x.dir === m.dir && ((m.id !== '' && x.id === m.id) || (x.body === m.body && Math.abs(x.time - m.time) < 2000)),
        );
      const added: ChatMessage[] = action.items
        .filter((m) => !known(m))
        .map((m): ChatMessage => ({ id: m.id, dir: m.dir, body: m.body, time: m.time, status: 'delivered', ...(m.file ? { file: true } : {}) }));
      if (added.length === 0) return state;
      // A stable sort: equal times keep archive order, older pages before what is already shown.
      const messages = (action.older ? [...added, ...c.messages] : [...c.messages, ...added]).sort((a, b) => a.time - b.time);
      return put(state, { ...c, messages });
    }
    case 'archive-page': {
      const c = conv(state, action.jid);
      // The newest page (on opening, again after a reconnect) never undoes paging further back.
      const archive =
        action.older || !c.archive || c.archive.oldest === null
          ? { oldest: action.first ?? c.archive?.oldest ?? null, complete: action.complete, loading: false }
          : { ...c.archive, loading: false };
      return put(state, { ...c, archive });
    }
    case 'archive-loading': {
      const c = conv(state, action.jid);
      return put(state, { ...c, archive: { oldest: c.archive?.oldest ?? null, complete: c.archive?.complete ?? false, loading: true } });
    }
    case 'archive-failed': {
      const c = state.conversations[action.jid];
      if (!c?.archive) return state;
      return put(state, { ...c, archive: { ...c.archive, loading: false } });
    }
    case 'seen': {
      const c = state.conversations[action.jid];
      if (!c || c.unread === 0) return state;
      return put(state, { ...c, unread: 0 });
    }
  }
}

export function totalUnread(state: ChatState): number {
  return Object.values(state.conversations).reduce((n, c) => n + c.unread, 0);
}

export function parseChatState(name: string): ChatStateName | null {
  return ['active', 'composing', 'paused', 'inactive', 'gone'].includes(name) ? (name as ChatStateName) : null;
}

/** "14:05" today, "Mon 14:05" this week, else a short date and time. */
export function formatTime(time: number, now: number = Date.now()): string {
  const d = new Date(time);
  const n = new Date(now);
  const hm = d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  if (d.toDateString() === n.toDateString()) return hm;
  if (now - time < 6 * 86400_000 && now >= time) {
    return `${d.toLocaleDateString(undefined, { weekday: 'short' })} ${hm}`;
  }
  return `${d.toLocaleDateString(undefined, { day: 'numeric', month: 'short', year: 'numeric' })} ${hm}`;
}
