// Group chat state (XEP-0045): joined rooms, their occupants, messages (de-duplicated by stanza id), subject, invitations (pure reducer).

export type Role = 'moderator' | 'participant' | 'visitor' | 'none';
export type Affiliation = 'owner' | 'admin' | 'member' | 'none' | 'outcast';

export interface Occupant {
  nick: string;
  role: Role;
  affiliation: Affiliation;
  /** The real JID, when the room shows it to us. */
  jid: string;
  /** XEP-0421 occupant id: stable for one account in one room. */
  occupantId: string;
  show: 'chat' | 'online' | 'away' | 'xa' | 'dnd';
  status: string;
}

export type RoomMessageStatus = 'pending' | 'sent' | 'error';

export interface RoomMessage {
  /** The room's archive id (XEP-0359 stanza-id), '' until known. */
  stanzaId: string;
  /** The sender's message id (ours is matched against the room's reflection). */
  msgId: string;
  nick: string;
  body: string;
  time: number;
  mine: boolean;
  /** Received as room history on join, or from the archive: not live. */
  history: boolean;
  /** A private message to us from this occupant (XEP-0045 §7.5), not seen by the room. */
  private?: boolean;
  /** The body is the URL of a shared file (XEP-0066). */
  file?: boolean;
  status: RoomMessageStatus;
  error?: string;
}

/**
 * joining: join presence sent; joined: self-presence received; password: the room wants a password;
 * error: the join failed (or we were removed) with `error`; offline: our connection is down.
 */
export type RoomStatus = 'joining' | 'joined' | 'password' | 'error' | 'offline';

export interface ArchivePaging {
  /** The oldest archive id known from an archive page (RSM <first/>). */
  oldest: string | null;
  /** The archive has nothing older (<fin complete='true'/>). */
  complete: boolean;
  loading: boolean;
}

export interface Room {
  jid: string;
  /** Our nickname (the one asked for, then the one the room confirmed). */
  nick: string;
  password: string;
  status: RoomStatus;
  error: string | null;
  /** The error condition of a failed join (e.g. "conflict"), for the view to offer the right fix. */
  errorCondition: string | null;
  subject: string;
  subjectBy: string;
  occupants: Record<string, Occupant>;
  /** Our own occupant id, to recognise our messages in history and the archive. */
  selfId: string;
  messages: RoomMessage[];
  unread: number;
  archive: ArchivePaging;
  /** The room accepted us at least once (worth remembering and rejoining). */
  everJoined: boolean;
}

export interface Invite {
  room: string;
  from: string;
  reason: string;
  password: string;
}

export interface RoomsState {
  rooms: Record<string, Room>;
  /** The bare JID of the open room. */
  active: string | null;
  invites: Invite[];
}

export interface OccupantInfo {
  nick: string;
  role: Role;
  affiliation: Affiliation;
  jid: string;
  occupantId: string;
  show: Occupant['show'];
  status: string;
}

export interface IncomingRoomMessage {
  stanzaId: string;
  msgId: string;
  nick: string;
  body: string;
  time: number;
  occupantId: string;
  /** Delayed (room history on join) or from the archive. */
  history: boolean;
  private?: boolean;
  file?: boolean;
}

export type RoomAction =
  /** `remembered`: a room from before a page reload (kept in the saved list before the room answers). */
  | { type: 'join'; jid: string; nick: string; password?: string; remembered?: boolean }
  | { type: 'self-presence'; jid: string; occupant: OccupantInfo; codes: number[] }
  | { type: 'occupant-available'; jid: string; occupant: OccupantInfo }
  | { type: 'occupant-unavailable'; jid: string; nick: string; codes: number[]; newNick?: string; self: boolean; reason?: string; destroyed?: boolean }
  | { type: 'join-error'; jid: string; condition: string; text: string }
  | { type: 'message'; jid: string; message: IncomingRoomMessage; seen: boolean }
  | { type: 'subject'; jid: string; subject: string; by: string }
  | { type: 'outgoing'; jid: string; msgId: string; body: string; time: number; file?: boolean }
  | { type: 'send-failed'; jid: string; msgId: string; error: string }
  | { type: 'archive-loading'; jid: string }
  | { type: 'archive-page'; jid: string; items: IncomingRoomMessage[]; first: string | null; complete: boolean }
  | { type: 'archive-failed'; jid: string }
  | { type: 'leave'; jid: string }
  | { type: 'open'; jid: string }
  | { type: 'close' }
  | { type: 'seen'; jid: string }
  | { type: 'offline' }
  | { type: 'invite'; invite: Invite }
  | { type: 'invite-handled'; room: string };

export const emptyRooms: RoomsState = { rooms: {}, active: null, invites: [] };

export function newRoom(jid: string, nick: string, password = ''): Room {
  return {
    jid,
    nick,
    password,
    status: 'joining',
    error: null,
    errorCondition: null,
    subject: '',
    subjectBy: '',
    occupants: {},
    selfId: '',
    messages: [],
    unread: 0,
    archive: { oldest: null, complete: false, loading: false },
    everJoined: false,
  };
}

function put(state: RoomsState, r: Room): RoomsState {
  return { ...state, rooms: { ...state.rooms, [r.jid]: r } };
}

function withRoom(state: RoomsState, jid: string, f: (r: Room) => Room): RoomsState {
  const r = state.rooms[jid];
  if (!r) return state;
  const next = f(r);
  return next === r ? state : put(state, next);
}

/** Explains why the room refused us (XEP-0045 §7.2 error conditions). */
export function joinErrorMessage(condition: string, text = ''): string {
  switch (condition) {
    case 'conflict':
      return 'That nickname is taken in this room. Choose another one.';
    case 'not-authorized':
      return text && !/password/i.test(text) ? text : 'This room needs a password.';
    case 'registration-required':
      return 'This room is for members only.';
    case 'forbidden':
      return 'You are banned from this room.';
    case 'service-unavailable':
      return 'The room is full (or not available). Try again later.';
    case 'item-not-found':
      return text || 'This room does not exist or is locked by its owner.';
    case 'not-allowed':
      return text ? `You may not create this room: ${text}.` : 'You may not create rooms on this service.';
    case 'jid-malformed':
      return 'That nickname or room address is not valid.';
    case 'remote-server-not-found':
    case 'remote-server-timeout':
      return 'The group chat service could not be reached.';
    default:
      return text || `The room refused to let you in (${condition.replace(/-/g, ' ')}).`;
  }
}

/** Why we are no longer in the room (status codes of our own unavailable presence, §9-10). */
export function removalMessage(codes: number[], reason = '', destroyed = false): string | null {
  const why = reason ? `: ${reason}` : '';
  if (destroyed) return `The room was closed by its owner${why}.`;
  if (codes.includes(301)) return `You were banned from this room${why}.`;
  if (codes.includes(307)) return `You were kicked from this room${why}.`;
  if (codes.includes(321)) return 'You were removed from this room: your membership changed.';
  if (codes.includes(322)) return 'You were removed from this room: it is now for members only.';
  if (codes.includes(332)) return 'You were removed from this room: the service is shutting down.';
  if (codes.includes(333)) return 'You were removed from this room after a technical problem. Rejoin to continue.';
  return null;
}

/** Explains a refused groupchat message. */
export function sendErrorMessage(condition: string, text = ''): string {
  if (text) return text;
  switch (condition) {
    case 'forbidden':
      return 'You may not send messages in this room.';
    case 'not-acceptable':
      return 'You are not in this room.';
    default:
      return condition.replace(/-/g, ' ') || 'error';
  }
}

function sameMessage(a: RoomMessage, b: IncomingRoomMessage): boolean {
  if (a.stanzaId && b.stanzaId) return a.stanzaId === b.stanzaId;
  // Without archive ids: the same sender and text within two seconds is a duplicate.
  return a.nick === b.nick && a.body === b.body && Math.abs(a.time - b.time) < 2000;
}

function isMine(r: Room, m: IncomingRoomMessage): boolean {
  if (m.private) return false;
  if (m.occupantId && r.selfId) return m.occupantId === r.selfId;
  return m.nick === r.nick;
}

/**
 * Inserts messages in time order, skipping known ones; returns null when nothing changed. An `older`
 * page (from the archive, before every known message) goes before messages of the same time.
 */
function merge(r: Room, items: IncomingRoomMessage[], older = false): { messages: RoomMessage[]; added: RoomMessage[] } | null {
  let messages = r.messages;
  const added: RoomMessage[] = [];
  for (const m of items) {
    if (!m.body) continue;
    // Our own message reflected by the room: the pending copy becomes sent, with its archive id.
    const mine = isMine(r, m);
    if (mine && m.msgId) {
      const i = messages.findIndex((x) => x.mine && x.msgId === m.msgId && !x.stanzaId);
      if (i >= 0) {
        messages = messages.slice();
        messages[i] = { ...messages[i], stanzaId: m.stanzaId, status: messages[i].status === 'error' ? 'error' : 'sent' };
        continue;
      }
    }
    const known = messages.findIndex((x) => sameMessage(x, m));
    if (known >= 0) {
      // A known message may learn its archive id (history after a live copy without one).
      if (m.stanzaId && !messages[known].stanzaId) {
        messages = messages.slice();
        messages[known] = { ...messages[known], stanzaId: m.stanzaId };
      }
      continue;
    }
    const msg: RoomMessage = {
      stanzaId: m.stanzaId,
      msgId: m.msgId,
      nick: m.nick,
      body: m.body,
      time: m.time,
      mine,
      history: m.history,
      status: 'sent',
    };
    if (m.private) msg.private = true;
    if (m.file) msg.file = true;
    added.push(msg);
    if (older) continue;
    if (messages === r.messages) messages = messages.slice();
    let i = messages.length;
    while (i > 0 && messages[i - 1].time > msg.time) i--;
    messages.splice(i, 0, msg);
  }
  if (older && added.length) messages = [...added, ...messages].sort((a, b) => a.time - b.time);
  if (messages === r.messages) return null;
  return { messages, added };
}

function toOccupant(o: OccupantInfo): Occupant {
  return { ...o };
}

export function roomsReducer(state: RoomsState, action: RoomAction): RoomsState {
  switch (action.type) {
    case 'join': {
      const old = state.rooms[action.jid];
      const r: Room = old
        ? {
            ...old,
            nick: action.nick,
            password: action.password ?? old.password,
            status: 'joining',
            error: null,
            errorCondition: null,
            occupants: {},
            everJoined: old.everJoined || !!action.remembered,
          }
        : { ...newRoom(action.jid, action.nick, action.password ?? ''), everJoined: !!action.remembered };
      return put(state, r);
    }
    case 'self-presence':
      return withRoom(state, action.jid, (r) => ({
        ...r,
        // The room may have changed our nickname (status 210).
        nick: action.occupant.nick,
        selfId: action.occupant.occupantId || r.selfId,
        status: 'joined',
        error: null,
        errorCondition: null,
        everJoined: true,
        occupants: { ...r.occupants, [action.occupant.nick]: toOccupant(action.occupant) },
      }));
    case 'occupant-available':
      return withRoom(state, action.jid, (r) => ({
        ...r,
        occupants: { ...r.occupants, [action.occupant.nick]: toOccupant(action.occupant) },
      }));
    case 'occupant-unavailable':
      return withRoom(state, action.jid, (r) => {
        const occupants = { ...r.occupants };
        const old = occupants[action.nick];
        delete occupants[action.nick];
        // A nickname change (303): the available presence from the new nick follows.
        if (action.codes.includes(303) && action.newNick) {
          if (old) occupants[action.newNick] = { ...old, nick: action.newNick };
          return { ...r, occupants, nick: action.self ? action.newNick : r.nick };
        }
        if (action.self) {
          const why = removalMessage(action.codes, action.reason, action.destroyed);
          return { ...r, occupants: {}, status: 'error', error: why ?? 'You left this room.', errorCondition: 'removed' };
        }
        return { ...r, occupants };
      });
    case 'join-error':
      return withRoom(state, action.jid, (r) => {
        // An error after we are in (e.g. a refused presence update) does not undo the join.
        if (r.status === 'joined') return r;
        return {
          ...r,
          status: action.condition === 'not-authorized' ? 'password' : 'error',
          error: joinErrorMessage(action.condition, action.text),
          errorCondition: action.condition,
          occupants: {},
        };
      });
    case 'message':
      return withRoom(state, action.jid, (r) => {
        const merged = merge(r, [action.message]);
        if (!merged) return r;
        const counts = merged.added.some((m) => !m.mine && !m.history) && !action.seen;
        return { ...r, messages: merged.messages, unread: counts ? r.unread + 1 : r.unread };
      });
    case 'subject':
      return withRoom(state, action.jid, (r) =>
        r.subject === action.subject && r.subjectBy === action.by ? r : { ...r, subject: action.subject, subjectBy: action.by },
      );
    case 'outgoing':
      return withRoom(state, action.jid, (r) => ({
        ...r,
        messages: [
          ...r.messages,
          {
            stanzaId: '',
            msgId: action.msgId,
            nick: r.nick,
            body: action.body,
            time: action.time,
            mine: true,
            history: false,
            status: 'pending',
            ...(action.file ? { file: true } : {}),
          },
        ],
      }));
    case 'send-failed':
      return withRoom(state, action.jid, (r) => {
        const i = r.messages.findIndex((m) => m.mine && m.msgId === action.msgId);
        if (i < 0) return r;
        const messages = r.messages.slice();
        messages[i] = { ...messages[i], status: 'error', error: action.error };
        return { ...r, messages };
      });
    case 'archive-loading':
      return withRoom(state, action.jid, (r) => ({ ...r, archive: { ...r.archive, loading: true } }));
    case 'archive-failed':
      return withRoom(state, action.jid, (r) => ({ ...r, archive: { ...r.archive, loading: false } }));
    case 'archive-page':
      return withRoom(state, action.jid, (r) => {
        const merged = merge(r, action.items.map((m) => ({ ...m, history: true })), true);
        return {
          ...r,
          messages: merged ? merged.messages : r.messages,
          archive: { oldest: action.first ?? r.archive.oldest, complete: action.complete, loading: false },
        };
      });
    case 'leave': {
      if (!state.rooms[action.jid]) return state;
      const rooms = { ...state.rooms };
      delete rooms[action.jid];
      return { ...state, rooms, active: state.active === action.jid ? null : state.active };
    }
    case 'open': {
      const r = state.rooms[action.jid];
      if (!r) return state;
      return { ...put(state, { ...r, unread: 0 }), active: action.jid };
    }
    case 'close':
      return state.active === null ? state : { ...state, active: null };
    case 'seen':
      return withRoom(state, action.jid, (r) => (r.unread === 0 ? r : { ...r, unread: 0 }));
    case 'offline': {
      const rooms: Record<string, Room> = {};
      for (const [j, r] of Object.entries(state.rooms)) {
        rooms[j] = r.status === 'joined' || r.status === 'joining' ? { ...r, status: 'offline', occupants: {} } : r;
      }
      return { ...state, rooms };
    }
    case 'invite': {
      if (state.rooms[action.invite.room]?.status === 'joined') return state;
      const invites = state.invites.filter((i) => i.room !== action.invite.room);
      return { ...state, invites: [...invites, action.invite] };
    }
    case 'invite-handled':
      return { ...state, invites: state.invites.filter((i) => i.room !== action.room) };
  }
}

/** The archive id to page back from: the oldest archive page's first id, else the oldest message's. */
export function oldestArchiveId(r: Room): string | null {
  if (r.archive.oldest) return r.archive.oldest;
  return r.messages.find((m) => m.stanzaId)?.stanzaId ?? null;
}

const ROLE_RANK: Record<Role, number> = { moderator: 3, participant: 2, visitor: 1, none: 0 };
const AFF_RANK: Record<Affiliation, number> = { owner: 4, admin: 3, member: 2, none: 1, outcast: 0 };

/** Occupants for the list: moderators first, then by affiliation, then by nickname. */
export function sortedOccupants(r: Room): Occupant[] {
  return Object.values(r.occupants).sort(
    (a, b) =>
      ROLE_RANK[b.role] - ROLE_RANK[a.role] ||
      AFF_RANK[b.affiliation] - AFF_RANK[a.affiliation] ||
      a.nick.localeCompare(b.nick),
  );
}

/**
 * Badges for an occupant: the affiliation (owner, admin, member), and the role when it is not what
 * the affiliation implies (owners and admins are moderators; a visitor has no voice).
 */
export function occupantBadges(o: Pick<Occupant, 'role' | 'affiliation'>): string[] {
  const badges: string[] = [];
  const high = o.affiliation === 'owner' || o.affiliation === 'admin';
  if (high || o.affiliation === 'member') badges.push(o.affiliation);
  if ((o.role === 'moderator' && !high) || o.role === 'visitor') badges.push(o.role);
  return badges;
}

export function roomUnread(state: RoomsState): number {
  return Object.values(state.rooms).reduce((n, r) => n + r.unread, 0);
}

/** The room's short name: its local part. */
export function roomName(jid: string): string {
  const at = jid.indexOf('@');
  return at > 0 ? jid.slice(0, at) : jid;
}

export function parseRole(s: string | null | undefined): Role {
  return s === 'moderator' || s === 'participant' || s === 'visitor' ? s : 'none';
}

export function parseAffiliation(s: string | null | undefined): Affiliation {
  return s === 'owner' || s === 'admin' || s === 'member' || s === 'outcast' ? s : 'none';
}

/**
 * The room JID for what someone typed in the join form: "lounge" is "lounge@<service>",
 * "lounge@conference.example.org" stays. Null when it cannot be a room address.
 */
export function roomJidFromInput(input: string, service: string): string | null {
  const t = input.trim().toLowerCase();
  if (!t) return null;
  const full = t.includes('@') ? t : `${t}@${service}`;
  const at = full.lastIndexOf('@');
  const local = full.slice(0, at);
  const domain = full.slice(at + 1);
  if (!local || !domain || /[\s"&'/:<>@]/.test(local) || /[\s@/]/.test(domain)) return null;
  return `${local}@${domain}`;
}
