// Unit tests for the group chat stanza parsers (presences, groupchat messages, invitations, archive items), on a small element double.
import { describe, expect, it } from 'vitest';
import {
  NS_CONFERENCE,
  NS_MUC,
  NS_MUC_USER,
  NS_OCCUPANT_ID,
  NS_SID,
  NS_STANZAS,
  parseGroupchat,
  parseInvite,
  parseMucPresence,
  parseRoomArchiveItem,
  stanzaError,
  type XmlEl,
} from '../src/xmpp/muc';

interface Node extends XmlEl {
  children: Node[];
}

/** e('x', { xmlns: NS }, ...children): an element whose children inherit its namespace. */
function e(name: string, attrs: Record<string, string> = {}, ...kids: (Node | string)[]): Node {
  const { xmlns, ...rest } = attrs;
  const node: Node = {
    localName: name,
    namespaceURI: xmlns ?? null,
    getAttribute: (n) => rest[n] ?? null,
    children: kids.filter((k): k is Node => typeof k !== 'string'),
    textContent: kids.map((k) => (typeof k === 'string' ? k : k.textContent)).join(''),
  };
  return node;
}

function inherit(n: Node, ns: string): Node {
  const own = n.namespaceURI ?? ns;
  (n as { namespaceURI: string | null }).namespaceURI = own;
  n.children.forEach((c) => inherit(c, own));
  return n;
}

const stanza = (name: string, attrs: Record<string, string>, ...kids: (Node | string)[]) => inherit(e(name, attrs, ...kids), 'jabber:client');
const R = 'lounge@conference.x';
const none = new Set<string>();

describe('parseMucPresence', () => {
  it('reads our self-presence: role, affiliation, status codes, occupant id', () => {
    const p = stanza(
      'presence',
      { from: `${R}/alice`, to: 'alice@x/web' },
      e('x', { xmlns: NS_MUC_USER }, e('status', { code: '201' }), e('item', { affiliation: 'owner', role: 'moderator', jid: 'alice@x/web' }), e('status', { code: '110' })),
      e('occupant-id', { xmlns: NS_OCCUPANT_ID, id: 'occ-1' }),
    );
    const m = parseMucPresence(p, none)!;
    expect(m).toMatchObject({ room: R, nick: 'alice', kind: 'available', self: true, codes: [201, 110] });
    expect(m.occupant).toMatchObject({ nick: 'alice', role: 'moderator', affiliation: 'owner', jid: 'alice@x', occupantId: 'occ-1', show: 'online' });
  });

  it('reads show and status of an occupant', () => {
    const p = stanza(
      'presence',
      { from: `${R}/bob` },
      e('show', {}, 'away'),
      e('status', {}, 'lunch'),
      e('x', { xmlns: NS_MUC_USER }, e('item', { affiliation: 'none', role: 'participant' })),
    );
    expect(parseMucPresence(p, none)!.occupant).toMatchObject({ show: 'away', status: 'lunch', role: 'participant', jid: '' });
  });

  it('is null for presence that is not about a room', () => {
    expect(parseMucPresence(stanza('presence', { from: 'bob@x/phone' }, e('show', {}, 'dnd')), none)).toBeNull();
    expect(parseMucPresence(stanza('presence', { from: 'bob@x/phone', type: 'error' }, e('error', { type: 'cancel' })), none)).toBeNull();
  });

  it('reads a refused join: from a known room, or echoing our muc payload', () => {
    const err = e('error', { type: 'cancel' }, e('conflict', { xmlns: NS_STANZAS }), e('text', { xmlns: NS_STANZAS }, 'That nickname is taken'));
    const echoed = stanza('presence', { from: `${R}/bob`, type: 'error' }, e('x', { xmlns: NS_MUC }), err);
    expect(parseMucPresence(echoed, none)).toMatchObject({ kind: 'error', error: { condition: 'conflict', text: 'That nickname is taken' } });
    const bare = stanza('presence', { from: `${R}/bob`, type: 'error' }, err);
    expect(parseMucPresence(bare, none)).toBeNull();
    expect(parseMucPresence(bare, new Set([R]))?.error?.condition).toBe('conflict');
  });

  it('reads nickname changes, kicks with a reason, and room destruction', () => {
    const change = stanza(
      'presence',
      { from: `${R}/carol`, type: 'unavailable' },
      e('x', { xmlns: NS_MUC_USER }, e('status', { code: '303' }), e('item', { nick: 'caro', role: 'participant', affiliation: 'none' })),
    );
    expect(parseMucPresence(change, none)).toMatchObject({ kind: 'unavailable', nick: 'carol', newNick: 'caro', self: false });
    const kick = stanza(
      'presence',
      { from: `${R}/alice`, type: 'unavailable' },
      e('x', { xmlns: NS_MUC_USER }, e('item', { role: 'none', affiliation: 'none' }, e('reason', {}, 'spam')), e('status', { code: '307' }), e('status', { code: '110' })),
    );
    expect(parseMucPresence(kick, none)).toMatchObject({ self: true, codes: [307, 110], reason: 'spam' });
    const destroyed = stanza(
      'presence',
      { from: `${R}/alice`, type: 'unavailable' },
      e('x', { xmlns: NS_MUC_USER }, e('item', { role: 'none' }), e('destroy', {}, e('reason', {}, 'moving')), e('status', { code: '110' })),
    );
    expect(parseMucPresence(destroyed, none)).toMatchObject({ destroyed: true, reason: 'moving' });
  });
});

describe('parseGroupchat', () => {
  it('reads a live message with the room stanza id and occupant id, ignoring ids by others', () => {
    const m = stanza(
      'message',
      { from: `${R}/bob`, type: 'groupchat', id: 'b1' },
      e('body', {}, 'hello'),
      e('stanza-id', { xmlns: NS_SID, by: 'bob@x', id: 'fake' }),
      e('stanza-id', { xmlns: NS_SID, by: R, id: 'real' }),
      e('occupant-id', { xmlns: NS_OCCUPANT_ID, id: 'occ-b' }),
    );
    expect(parseGroupchat(m, 42)).toEqual({
      kind: 'message',
      room: R,
      message: { stanzaId: 'real', msgId: 'b1', nick: 'bob', body: 'hello', time: 42, occupantId: 'occ-b', history: false },
    });
  });

  it('reads history (delayed) with its stamp', () => {
    const m = stanza(
      'message',
      { from: `${R}/bob`, type: 'groupchat' },
      e('body', {}, 'earlier'),
      e('delay', { xmlns: 'urn:xmpp:delay', from: R, stamp: '2026-01-02T03:04:05.678Z' }),
    );
    const g = parseGroupchat(m);
    expect(g?.kind === 'message' && g.message).toMatchObject({ history: true, time: Date.parse('2026-01-02T03:04:05.678Z') });
  });

  it('reads a subject, also an empty one from the room itself', () => {
    expect(parseGroupchat(stanza('message', { from: `${R}/bob`, type: 'groupchat' }, e('subject', {}, 'Plans')))).toEqual({ kind: 'subject', room: R, subject: 'Plans', by: 'bob' });
    expect(parseGroupchat(stanza('message', { from: R, type: 'groupchat' }, e('subject')))).toEqual({ kind: 'subject', room: R, subject: '', by: '' });
    expect(parseGroupchat(stanza('message', { from: R, type: 'groupchat' }, e('x', { xmlns: NS_MUC_USER }, e('status', { code: '104' }))))).toBeNull();
  });
});

describe('invitations and archive items', () => {
  it('reads direct (XEP-0249) and mediated invitations', () => {
    const direct = stanza('message', { from: 'dave@x/laptop' }, e('x', { xmlns: NS_CONFERENCE, jid: 'Den@conference.x', reason: 'come', password: 'pw' }));
    expect(parseInvite(direct)).toEqual({ room: 'den@conference.x', from: 'dave@x', reason: 'come', password: 'pw' });
    const mediated = stanza(
      'message',
      { from: R },
      e('x', { xmlns: NS_MUC_USER }, e('invite', { from: 'dave@x/laptop' }, e('reason', {}, 'join us')), e('password', {}, 'secret')),
      e('body', {}, 'dave invited you'),
      e('x', { xmlns: NS_CONFERENCE, jid: R }),
    );
    expect(parseInvite(mediated)).toEqual({ room: R, from: 'dave@x', reason: 'join us', password: 'secret' });
    const byNick = stanza('message', { from: R }, e('x', { xmlns: NS_MUC_USER }, e('invite', { from: `${R}/dave` })));
    expect(parseInvite(byNick)?.from).toBe('dave');
    expect(parseInvite(stanza('message', { from: 'bob@x' }, e('body', {}, 'hi')))).toBeNull();
  });

  it('reads a room archive result', () => {
    const fwd = inherit(
      e(
        'forwarded',
        { xmlns: 'urn:xmpp:forward:0' },
        e('delay', { xmlns: 'urn:xmpp:delay', stamp: '2026-01-02T03:04:05Z' }),
        e('message', { xmlns: 'jabber:client', from: `${R}/bob`, type: 'groupchat', id: 'b7' }, e('body', {}, 'old'), e('occupant-id', { xmlns: NS_OCCUPANT_ID, id: 'occ-b' })),
      ),
      'urn:xmpp:mam:2',
    );
    const result = e('result', { xmlns: 'urn:xmpp:mam:2', id: 'arch-1' }, fwd);
    expect(parseRoomArchiveItem(result, fwd)).toEqual({
      stanzaId: 'arch-1',
      msgId: 'b7',
      nick: 'bob',
      body: 'old',
      time: Date.parse('2026-01-02T03:04:05Z'),
      occupantId: 'occ-b',
      history: true,
    });
  });

  it('reads stanza error conditions and texts', () => {
    const m = stanza('message', { type: 'error' }, e('error', { type: 'auth' }, e('forbidden', { xmlns: NS_STANZAS }), e('text', { xmlns: NS_STANZAS }, 'You have no voice')));
    expect(stanzaError(m)).toEqual({ condition: 'forbidden', text: 'You have no voice' });
    expect(stanzaError(stanza('message', {}))).toEqual({ condition: '', text: '' });
  });
});
