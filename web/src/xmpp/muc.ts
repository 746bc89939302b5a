// XEP-0045 (and XEP-0249, XEP-0359, XEP-0421) stanza parsing for group chat: presences, groupchat messages, invitations, archive items.
import { bareJid, parseJid, resourceOf } from '../jid';
import { parseAffiliation, parseRole, type IncomingRoomMessage, type Invite, type OccupantInfo } from '../state/rooms';
import { parseShow } from '../state/roster';
import { isSharedFile } from './upload';

export const NS_MUC = 'http://jabber.org/protocol/muc';
export const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
export const NS_MUC_OWNER = 'http://jabber.org/protocol/muc#owner';
export const NS_CONFERENCE = 'jabber:x:conference';
export const NS_SID = 'urn:xmpp:sid:0';
export const NS_OCCUPANT_ID = 'urn:xmpp:occupant-id:0';
export const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
const NS_DELAY = 'urn:xmpp:delay';

/** What the parsers read of an element: a DOM Element fits, and so does a small test double. */
export interface XmlEl {
  readonly localName: string;
  readonly namespaceURI: string | null;
  getAttribute(name: string): string | null;
  readonly children: ArrayLike<XmlEl>;
  readonly textContent: string | null;
}

function kids(el: XmlEl): XmlEl[] {
  return Array.from(el.children);
}

export function childNs(el: XmlEl, name: string, ns: string): XmlEl | null {
  return kids(el).find((c) => c.localName === name && c.namespaceURI === ns) ?? null;
}

function childText(el: XmlEl, name: string): string {
  return kids(el).find((c) => c.localName === name)?.textContent ?? '';
}

/** The condition and text of a stanza's <error/> ("" when there is none). */
export function stanzaError(stanza: XmlEl): { condition: string; text: string } {
  const err = kids(stanza).find((c) => c.localName === 'error');
  if (!err) return { condition: '', text: '' };
  const cond = kids(err).find((c) => c.localName !== 'text' && (c.namespaceURI === NS_STANZAS || c.namespaceURI === null));
  return { condition: cond?.localName ?? 'undefined-condition', text: childText(err, 'text') };
}

export interface MucPresence {
  room: string;
  nick: string;
  kind: 'available' | 'unavailable' | 'error';
  occupant: OccupantInfo;
  codes: number[];
  /** Status 110: this presence is about us. */
  self: boolean;
  /** Status 303: the new nickname of an occupant that changed it. */
  newNick?: string;
  /** The reason given for a kick, ban or room destruction. */
  reason?: string;
  destroyed?: boolean;
  error?: { condition: string; text: string };
}

/**
 * A presence from a room occupant (room@service/nick): null when the presence is not a MUC one
 * (no muc#user payload, and not an error about a room in `knownRooms`).
 */
export function parseMucPresence(p: XmlEl, knownRooms: { has(room: string): boolean }): MucPresence | null {
  const from = p.getAttribute('from') ?? '';
  const jid = parseJid(from);
  if (!jid || !jid.local) return null;
  const room = bareJid(from);
  const nick = resourceOf(from);
  const type = p.getAttribute('type');
  const x = childNs(p, 'x', NS_MUC_USER);
  if (type === 'error') {
    if (!knownRooms.has(room) && !x && !childNs(p, 'x', NS_MUC)) return null;
  } else if (!x || !nick) {
    return null;
  }
  const item = x ? childNs(x, 'item', NS_MUC_USER) : null;
  const codes = x
    ? kids(x)
        .filter((c) => c.localName === 'status')
        .map((c) => parseInt(c.getAttribute('code') ?? '', 10))
        .filter((n) => Number.isFinite(n))
    : [];
  const occupant: OccupantInfo = {
    nick,
    role: parseRole(item?.getAttribute('role')),
    affiliation: parseAffiliation(item?.getAttribute('affiliation')),
    jid: item?.getAttribute('jid') ? bareJid(item.getAttribute('jid')!) : '',
    occupantId: childNs(p, 'occupant-id', NS_OCCUPANT_ID)?.getAttribute('id') ?? '',
    show: parseShow(childText(p, 'show')),
    status: childText(p, 'status'),
  };
  const result: MucPresence = {
    room,
    nick,
    kind: type === 'error' ? 'error' : type === 'unavailable' ? 'unavailable' : 'available',
    occupant,
    codes,
    self: codes.includes(110),
  };
  if (type === 'error') result.error = stanzaError(p);
  if (codes.includes(303) && item?.getAttribute('nick')) result.newNick = item.getAttribute('nick')!;
  const reason = item ? childNs(item, 'reason', NS_MUC_USER)?.textContent : undefined;
  const destroy = x ? childNs(x, 'destroy', NS_MUC_USER) : null;
  if (destroy) {
    result.destroyed = true;
    result.reason = childNs(destroy, 'reason', NS_MUC_USER)?.textContent ?? '';
  } else if (reason) {
    result.reason = reason;
  }
  return result;
}

function delayStamp(el: XmlEl): number | null {
  const d = childNs(el, 'delay', NS_DELAY);
  const t = d ? Date.parse(d.getAttribute('stamp') ?? '') : NaN;
  return Number.isFinite(t) ? t : null;
}

/** The room's own archive id of a groupchat message (XEP-0359, `by` the room). */
function roomStanzaId(m: XmlEl, room: string): string {
  for (const c of kids(m)) {
    if (c.localName === 'stanza-id' && c.namespaceURI === NS_SID && bareJid(c.getAttribute('by') ?? '') === room) {
      return c.getAttribute('id') ?? '';
    }
  }
  return '';
}

export type Groupchat =
  | { kind: 'message'; room: string; message: IncomingRoomMessage }
  | { kind: 'subject'; room: string; subject: string; by: string };

/** A type='groupchat' message from a room: a message with a body, or a subject change. */
export function parseGroupchat(m: XmlEl, now: number = Date.now()): Groupchat | null {
  const from = m.getAttribute('from') ?? '';
  const room = bareJid(from);
  const nick = resourceOf(from);
  const subject = kids(m).find((c) => c.localName === 'subject');
  const body = kids(m).find((c) => c.localName === 'body');
  // XEP-0045 §8.1: a subject message has a <subject/> and no <body/>.
  if (subject && !body) return { kind: 'subject', room, subject: subject.textContent ?? '', by: nick };
  if (!body) return null;
  const stamp = delayStamp(m);
  return {
    kind: 'message',
    room,
    message: {
      stanzaId: roomStanzaId(m, room),
      msgId: m.getAttribute('id') ?? '',
      nick,
      body: body.textContent ?? '',
      time: stamp ?? now,
      occupantId: childNs(m, 'occupant-id', NS_OCCUPANT_ID)?.getAttribute('id') ?? '',
      history: stamp !== null,
      ...(isSharedFile(m) ? { file: true } : {}),
    },
  };
}

/** A room message from the room's archive: `<result id>` wrapping a forwarded groupchat message. */
export function parseRoomArchiveItem(result: XmlEl, forwarded: XmlEl, now: number = Date.now()): IncomingRoomMessage | null {
  const inner = kids(forwarded).find((c) => c.localName === 'message');
  if (!inner) return null;
  const body = kids(inner).find((c) => c.localName === 'body');
  if (!body) return null;
  return {
    stanzaId: result.getAttribute('id') ?? '',
    msgId: inner.getAttribute('id') ?? '',
    nick: resourceOf(inner.getAttribute('from') ?? ''),
    body: body.textContent ?? '',
    time: delayStamp(forwarded) ?? delayStamp(inner) ?? now,
    occupantId: childNs(inner, 'occupant-id', NS_OCCUPANT_ID)?.getAttribute('id') ?? '',
    history: true,
    ...(isSharedFile(inner) ? { file: true } : {}),
  };
}

/** A room invitation: direct (XEP-0249) or mediated by the room (XEP-0045 §7.8.2). */
export function parseInvite(m: XmlEl): Invite | null {
  const from = m.getAttribute('from') ?? '';
  const direct = childNs(m, 'x', NS_CONFERENCE);
  const user = childNs(m, 'x', NS_MUC_USER);
  const mediated = user ? childNs(user, 'invite', NS_MUC_USER) : null;
  if (mediated) {
    // The inviter's real JID (§7.8.2); a room that names its occupant (room@service/nick) gives the nick.
    const inviter = mediated.getAttribute('from') ?? '';
    const room = bareJid(from);
    return {
      room,
      from: bareJid(inviter) === room ? resourceOf(inviter) || room : bareJid(inviter) || room,
      reason: childNs(mediated, 'reason', NS_MUC_USER)?.textContent ?? '',
      password: childNs(user!, 'password', NS_MUC_USER)?.textContent ?? '',
    };
  }
  if (direct && direct.getAttribute('jid')) {
    return {
      room: bareJid(direct.getAttribute('jid')!),
      from: bareJid(from),
      reason: direct.getAttribute('reason') ?? '',
      password: direct.getAttribute('password') ?? '',
    };
  }
  return null;
}
