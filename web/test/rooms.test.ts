// Unit tests for the group chat reducer: joining, occupants, message de-duplication, archive paging, errors, invitations, saved rooms.
import { describe, expect, it } from 'vitest';
import {
  emptyRooms,
  joinErrorMessage,
  occupantBadges,
  oldestArchiveId,
  removalMessage,
  roomJidFromInput,
  roomsReducer,
  roomUnread,
  sortedOccupants,
  type IncomingRoomMessage,
  type OccupantInfo,
  type RoomAction,
  type RoomsState,
} from '../src/state/rooms';
import { loadRooms, saveRooms, forgetRooms } from '../src/saved-rooms';

const R = 'lounge@conference.x';
const run = (actions: RoomAction[], s: RoomsState = emptyRooms) => actions.reduce(roomsReducer, s);

function occ(nick: string, more: Partial<OccupantInfo> = {}): OccupantInfo {
  return { nick, role: 'participant', affiliation: 'none', jid: '', occupantId: `id-${nick}`, show: 'online', status: '', ...more };
}

function msg(nick: string, body: string, more: Partial<IncomingRoomMessage> = {}): IncomingRoomMessage {
  return { stanzaId: '', msgId: '', nick, body, time: 1000, occupantId: `id-${nick}`, history: false, ...more };
}

/** alice has joined the lounge, where bob already is. */
const joined = (): RoomsState =>
  run([
    { type: 'join', jid: R, nick: 'alice' },
    { type: 'occupant-available', jid: R, occupant: occ('bob') },
    { type: 'self-presence', jid: R, occupant: occ('alice', { role: 'moderator', affiliation: 'owner' }), codes: [110, 201] },
  ]);

describe('joining', () => {
  it('goes from joining to joined with our occupant and its id', () => {
    let s = run([{ type: 'join', jid: R, nick: 'alice' }]);
    expect(s.rooms[R].status).toBe('joining');
    expect(s.rooms[R].everJoined).toBe(false);
    s = joined();
    const r = s.rooms[R];
    expect(r.status).toBe('joined');
    expect(r.everJoined).toBe(true);
    expect(r.selfId).toBe('id-alice');
    expect(Object.keys(r.occupants).sort()).toEqual(['alice', 'bob']);
  });

  it('takes the nickname the room gave us', () => {
    const s = run([
      { type: 'join', jid: R, nick: 'Alice' },
      { type: 'self-presence', jid: R, occupant: occ('alice'), codes: [110, 210] },
    ]);
    expect(s.rooms[R].nick).toBe('alice');
  });

  it('maps join errors to explanations; a password error asks for the password', () => {
    const err = (condition: string, text = '') =>
      run([{ type: 'join', jid: R, nick: 'bob' }, { type: 'join-error', jid: R, condition, text }]).rooms[R];
    const conflict = err('conflict', 'That nickname is taken');
    expect(conflict.status).toBe('error');
    expect(conflict.errorCondition).toBe('conflict');
    expect(conflict.error).toMatch(/^That nickname is taken in this room/);
    const pw = err('not-authorized', 'A password is required');
    expect(pw.status).toBe('password');
    expect(pw.error).toBe('This room needs a password.');
    expect(err('registration-required').error).toMatch(/members only/);
    expect(err('forbidden').error).toMatch(/banned/);
    expect(err('service-unavailable').error).toMatch(/full/);
    expect(err('item-not-found', 'This room is locked until its owner configures it').error).toMatch(/locked/);
    expect(joinErrorMessage('undefined-condition')).toMatch(/undefined condition/);
  });

  it('ignores an error once we are in, and a join again resets the error and occupants', () => {
    let s = joined();
    s = roomsReducer(s, { type: 'join-error', jid: R, condition: 'conflict', text: '' });
    expect(s.rooms[R].status).toBe('joined');
    s = run([{ type: 'offline' }], s);
    expect(s.rooms[R].status).toBe('offline');
    expect(s.rooms[R].occupants).toEqual({});
    s = roomsReducer(s, { type: 'join', jid: R, nick: 'alice' });
    expect(s.rooms[R].status).toBe('joining');
    expect(s.rooms[R].everJoined).toBe(true);
  });
});

describe('occupants', () => {
  it('join, leave and change nickname live', () => {
    let s = joined();
    s = roomsReducer(s, { type: 'occupant-available', jid: R, occupant: occ('carol') });
    expect(Object.keys(s.rooms[R].occupants)).toContain('carol');
    // A presence update replaces the occupant's details.
    s = roomsReducer(s, { type: 'occupant-available', jid: R, occupant: occ('carol', { show: 'away', status: 'lunch' }) });
    expect(s.rooms[R].occupants.carol.show).toBe('away');
    s = roomsReducer(s, { type: 'occupant-unavailable', jid: R, nick: 'carol', codes: [303], newNick: 'caro', self: false });
    expect(Object.keys(s.rooms[R].occupants).sort()).toEqual(['alice', 'bob', 'caro']);
    s = roomsReducer(s, { type: 'occupant-available', jid: R, occupant: occ('caro') });
    s = roomsReducer(s, { type: 'occupant-unavailable', jid: R, nick: 'bob', codes: [], self: false });
    expect(Object.keys(s.rooms[R].occupants).sort()).toEqual(['alice', 'caro']);
    expect(s.rooms[R].status).toBe('joined');
  });

  it('our own nickname change follows 303', () => {
    const s = roomsReducer(joined(), { type: 'occupant-unavailable', jid: R, nick: 'alice', codes: [303, 110], newNick: 'al', self: true });
    expect(s.rooms[R].nick).toBe('al');
    expect(s.rooms[R].status).toBe('joined');
  });

  it('being kicked, banned or the room closing ends the membership with the reason', () => {
    const out = (codes: number[], reason = '', destroyed = false) =>
      roomsReducer(joined(), { type: 'occupant-unavailable', jid: R, nick: 'alice', codes: [...codes, 110], self: true, reason, destroyed }).rooms[R];
    const kicked = out([307], 'spam');
    expect(kicked.status).toBe('error');
    expect(kicked.error).toBe('You were kicked from this room: spam.');
    expect(kicked.occupants).toEqual({});
    expect(out([301]).error).toMatch(/banned/);
    expect(out([], 'moving', true).error).toBe('The room was closed by its owner: moving.');
    expect(removalMessage([])).toBeNull();
  });

  it('sorts moderators first and shows badges for affiliations and unusual roles', () => {
    let s = joined();
    s = roomsReducer(s, { type: 'occupant-available', jid: R, occupant: occ('aaron', { role: 'visitor' }) });
    s = roomsReducer(s, { type: 'occupant-available', jid: R, occupant: occ('mod', { role: 'moderator' }) });
    expect(sortedOccupants(s.rooms[R]).map((o) => o.nick)).toEqual(['alice', 'mod', 'bob', 'aaron']);
    expect(occupantBadges({ role: 'moderator', affiliation: 'owner' })).toEqual(['owner']);
    expect(occupantBadges({ role: 'moderator', affiliation: 'none' })).toEqual(['moderator']);
    expect(occupantBadges({ role: 'participant', affiliation: 'member' })).toEqual(['member']);
    expect(occupantBadges({ role: 'visitor', affiliation: 'none' })).toEqual(['visitor']);
    expect(occupantBadges({ role: 'participant', affiliation: 'none' })).toEqual([]);
  });
});

describe('messages', () => {
  it('drops duplicates by archive id (history again after a rejoin)', () => {
    let s = joined();
    const a = msg('bob', 'hello', { stanzaId: 's1', time: 100, history: true });
    s = roomsReducer(s, { type: 'message', jid: R, message: a, seen: false });
    s = roomsReducer(s, { type: 'message', jid: R, message: { ...a }, seen: false });
    s = roomsReducer(s, { type: 'message', jid: R, message: msg('bob', 'hello', { stanzaId: 's2', time: 200 }), seen: false });
    expect(s.rooms[R].messages.map((m) => m.stanzaId)).toEqual(['s1', 's2']);
    // History is not unread; the live message is.
    expect(s.rooms[R].unread).toBe(1);
    expect(roomUnread(s)).toBe(1);
    expect(s.rooms[R].messages[0].history).toBe(true);
  });

  it('without archive ids, the same sender and text within two seconds is one message', () => {
    let s = joined();
    s = roomsReducer(s, { type: 'message', jid: R, message: msg('bob', 'hi', { time: 1000 }), seen: true });
    s = roomsReducer(s, { type: 'message', jid: R, message: msg('bob', 'hi', { time: 2500, stanzaId: 'z' }), seen: true });
    s = roomsReducer(s, { type: 'message', jid: R, message: msg('bob', 'hi', { time: 9000 }), seen: true });
    expect(s.rooms[R].messages).toHaveLength(2);
    expect(s.rooms[R].messages[0].stanzaId).toBe('z');
  });

  it('our message is pending until the room reflects it, then sent once', () => {
    let s = joined();
    s = roomsReducer(s, { type: 'outgoing', jid: R, msgId: 'm1', body: 'mine', time: 5000 });
    expect(s.rooms[R].messages[0]).toMatchObject({ mine: true, status: 'pending', nick: 'alice' });
    s = roomsReducer(s, { type: 'message', jid: R, message: msg('alice', 'mine', { msgId: 'm1', stanzaId: 's9', time: 5001 }), seen: false });
    expect(s.rooms[R].messages).toHaveLength(1);
    expect(s.rooms[R].messages[0]).toMatchObject({ status: 'sent', stanzaId: 's9' });
    expect(s.rooms[R].unread).toBe(0);
    s = roomsReducer(s, { type: 'outgoing', jid: R, msgId: 'm2', body: 'refused', time: 6000 });
    s = roomsReducer(s, { type: 'send-failed', jid: R, msgId: 'm2', error: 'You have no voice' });
    expect(s.rooms[R].messages[1]).toMatchObject({ status: 'error', error: 'You have no voice' });
  });

  it('recognises our messages by occupant id, even under another nickname', () => {
    let s = joined();
    s = roomsReducer(s, { type: 'message', jid: R, message: msg('old-alice', 'before', { occupantId: 'id-alice', history: true }), seen: false });
    s = roomsReducer(s, { type: 'message', jid: R, message: msg('alice', 'not me', { occupantId: 'id-impostor', time: 2000 }), seen: false });
    expect(s.rooms[R].messages.map((m) => m.mine)).toEqual([true, false]);
  });

  it('keeps time order, and counts nothing while the room is open and seen', () => {
    let s = roomsReducer(joined(), { type: 'open', jid: R });
    s = roomsReducer(s, { type: 'message', jid: R, message: msg('bob', 'late', { stanzaId: 'b', time: 300 }), seen: true });
    s = roomsReducer(s, { type: 'message', jid: R, message: msg('bob', 'early', { stanzaId: 'a', time: 100, history: true }), seen: true });
    expect(s.rooms[R].messages.map((m) => m.body)).toEqual(['early', 'late']);
    expect(s.rooms[R].unread).toBe(0);
  });

  it('sets the subject', () => {
    const s = roomsReducer(joined(), { type: 'subject', jid: R, subject: 'Plans', by: 'bob' });
    expect(s.rooms[R]).toMatchObject({ subject: 'Plans', subjectBy: 'bob' });
  });
});

describe('archive paging', () => {
  it('pages back from the oldest archive id, before messages of the same second, until complete', () => {
    let s = joined();
    s = roomsReducer(s, { type: 'message', jid: R, message: msg('bob', 'n3', { stanzaId: 's3', time: 5000, history: true }), seen: false });
    s = roomsReducer(s, { type: 'message', jid: R, message: msg('bob', 'n4', { stanzaId: 's4', time: 5000, history: true }), seen: false });
    expect(oldestArchiveId(s.rooms[R])).toBe('s3');
    s = roomsReducer(s, { type: 'archive-loading', jid: R });
    expect(s.rooms[R].archive.loading).toBe(true);
    s = roomsReducer(s, {
      type: 'archive-page',
      jid: R,
      items: [msg('bob', 'n1', { stanzaId: 's1', time: 5000 }), msg('bob', 'n2', { stanzaId: 's2', time: 5000 }), msg('bob', 'n3', { stanzaId: 's3', time: 5000 })],
      first: 's1',
      complete: true,
    });
    const r = s.rooms[R];
    expect(r.messages.map((m) => m.body)).toEqual(['n1', 'n2', 'n3', 'n4']);
    expect(r.messages.every((m) => m.history)).toBe(true);
    expect(r.archive).toEqual({ oldest: 's1', complete: true, loading: false });
    expect(r.unread).toBe(0);
    expect(oldestArchiveId(r)).toBe('s1');
  });

  it('an empty last page completes the archive and keeps the oldest id', () => {
    let s = roomsReducer(joined(), { type: 'archive-page', jid: R, items: [msg('bob', 'x', { stanzaId: 'q' })], first: 'q', complete: false });
    s = roomsReducer(s, { type: 'archive-page', jid: R, items: [], first: null, complete: true });
    expect(s.rooms[R].archive).toEqual({ oldest: 'q', complete: true, loading: false });
    s = roomsReducer(s, { type: 'archive-failed', jid: R });
    expect(s.rooms[R].archive.loading).toBe(false);
  });
});

describe('rooms list', () => {
  it('opens, closes and leaves rooms', () => {
    let s = roomsReducer(joined(), { type: 'message', jid: R, message: msg('bob', 'x', { stanzaId: '1' }), seen: false });
    s = roomsReducer(s, { type: 'open', jid: R });
    expect(s.active).toBe(R);
    expect(s.rooms[R].unread).toBe(0);
    s = roomsReducer(s, { type: 'leave', jid: R });
    expect(s.rooms[R]).toBeUndefined();
    expect(s.active).toBeNull();
    expect(roomsReducer(s, { type: 'leave', jid: R })).toBe(s);
  });

  it('keeps one invitation per room, none for a room we are in', () => {
    const inv = { room: 'den@conference.x', from: 'dave@x', reason: '', password: '' };
    let s = run([{ type: 'invite', invite: inv }, { type: 'invite', invite: { ...inv, reason: 'again' } }]);
    expect(s.invites).toEqual([{ ...inv, reason: 'again' }]);
    s = roomsReducer(s, { type: 'invite-handled', room: inv.room });
    expect(s.invites).toEqual([]);
    expect(roomsReducer(joined(), { type: 'invite', invite: { ...inv, room: R } }).invites).toEqual([]);
  });

  it('completes room names with the service and checks addresses', () => {
    expect(roomJidFromInput(' Lounge ', 'conference.x')).toBe('lounge@conference.x');
    expect(roomJidFromInput('team@chat.example.org', 'conference.x')).toBe('team@chat.example.org');
    expect(roomJidFromInput('two words', 'conference.x')).toBeNull();
    expect(roomJidFromInput('a/b', 'conference.x')).toBeNull();
    expect(roomJidFromInput('', 'conference.x')).toBeNull();
  });

  it('remembers rooms per account in storage', () => {
    const m = new Map<string, string>();
    const storage = {
      getItem: (k: string) => m.get(k) ?? null,
      setItem: (k: string, v: string) => void m.set(k, v),
      removeItem: (k: string) => void m.delete(k),
    } as Storage;
    expect(loadRooms('a@x', storage)).toEqual([]);
    saveRooms('a@x', [{ jid: R, nick: 'alice' }], storage);
    expect(loadRooms('a@x', storage)).toEqual([{ jid: R, nick: 'alice' }]);
    expect(loadRooms('b@x', storage)).toEqual([]);
    m.set('rookery.rooms.a@x', '{"not":"a list"}');
    expect(loadRooms('a@x', storage)).toEqual([]);
    saveRooms('a@x', [{ jid: R, nick: 'alice' }], storage);
    forgetRooms('a@x', storage);
    expect(m.size).toBe(0);
  });
});
