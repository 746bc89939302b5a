// Unit tests for the roster reducer: items, presence aggregation, subscription requests.
import { describe, expect, it } from 'vitest';
import { bestPresence, emptyRoster, rosterReducer, sortedContacts, type RosterAction, type RosterState } from '../src/state/roster';

const run = (actions: RosterAction[], s: RosterState = emptyRoster) => actions.reduce(rosterReducer, s);

describe('roster', () => {
  it('loads items and applies pushes, including removal', () => {
    let s = run([{ type: 'roster-loaded', items: [{ jid: 'bob@x', subscription: 'both' }, { jid: 'eve@x', subscription: 'none', ask: true }] }]);
    expect(Object.keys(s.contacts)).toEqual(['bob@x', 'eve@x']);
    expect(s.contacts['eve@x'].ask).toBe(true);
    s = rosterReducer(s, { type: 'roster-push', item: { jid: 'eve@x', subscription: 'remove' } });
    expect(s.contacts['eve@x']).toBeUndefined();
    s = rosterReducer(s, { type: 'roster-push', item: { jid: 'carol@x', subscription: 'to', name: 'Carol' } });
    expect(s.contacts['carol@x'].name).toBe('Carol');
  });

  it('keeps presence across a roster push and picks the best resource', () => {
    const s = run([
      { type: 'roster-loaded', items: [{ jid: 'bob@x', subscription: 'both' }] },
      { type: 'available', jid: 'bob@x', resource: 'a', show: 'away', status: 'lunch', priority: 0 },
      { type: 'available', jid: 'bob@x', resource: 'b', show: 'online', status: 'here', priority: 0 },
      { type: 'roster-push', item: { jid: 'bob@x', subscription: 'both', name: 'Bob' } },
    ]);
    expect(bestPresence(s.contacts['bob@x'])).toEqual({ show: 'online', status: 'here' });
    const s2 = run([{ type: 'unavailable', jid: 'bob@x', resource: 'b', status: '' }], s);
    expect(bestPresence(s2.contacts['bob@x'])).toEqual({ show: 'away', status: 'lunch' });
    const s3 = run([{ type: 'unavailable', jid: 'bob@x', resource: 'a', status: 'bye' }], s2);
    expect(bestPresence(s3.contacts['bob@x'])).toEqual({ show: 'offline', status: 'bye' });
  });

  it('prefers higher priority over a better show', () => {
    const s = run([
      { type: 'roster-loaded', items: [{ jid: 'bob@x', subscription: 'both' }] },
      { type: 'available', jid: 'bob@x', resource: 'a', show: 'chat', status: '', priority: 0 },
      { type: 'available', jid: 'bob@x', resource: 'b', show: 'dnd', status: 'busy', priority: 5 },
    ]);
    expect(bestPresence(s.contacts['bob@x']).show).toBe('dnd');
  });

  it('ignores presence from strangers and tracks requests once', () => {
    const s = run([
      { type: 'available', jid: 'zed@x', resource: 'a', show: 'online', status: '', priority: 0 },
      { type: 'subscribe-request', jid: 'zed@x' },
      { type: 'subscribe-request', jid: 'zed@x' },
    ]);
    expect(s.contacts).toEqual({});
    expect(s.requests).toEqual(['zed@x']);
    expect(run([{ type: 'request-handled', jid: 'zed@x' }], s).requests).toEqual([]);
    expect(run([{ type: 'roster-push', item: { jid: 'zed@x', subscription: 'from' } }], s).requests).toEqual([]);
  });

  it('sorts available contacts first, then by name; all-offline clears presence', () => {
    const s = run([
      { type: 'roster-loaded', items: [{ jid: 'amy@x', subscription: 'both' }, { jid: 'bob@x', subscription: 'both' }, { jid: 'cat@x', subscription: 'both' }] },
      { type: 'available', jid: 'cat@x', resource: 'r', show: 'away', status: '', priority: 0 },
    ]);
    expect(sortedContacts(s).map((c) => c.jid)).toEqual(['cat@x', 'amy@x', 'bob@x']);
    const off = rosterReducer(s, { type: 'all-offline' });
    expect(bestPresence(off.contacts['cat@x']).show).toBe('offline');
  });
});
