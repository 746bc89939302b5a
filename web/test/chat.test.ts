// Unit tests for the chat reducer: messages, unread counts, receipts, chat states, time formatting.
import { describe, expect, it } from 'vitest';
import { chatReducer, emptyChats, formatTime, totalUnread, type ChatAction, type ChatState } from '../src/state/chat';

const run = (actions: ChatAction[], s: ChatState = emptyChats) => actions.reduce(chatReducer, s);

describe('chat', () => {
  it('counts unread messages until the conversation is opened', () => {
    let s = run([
      { type: 'incoming', jid: 'bob@x', id: '1', body: 'hi', time: 1, seen: false },
      { type: 'incoming', jid: 'bob@x', id: '2', body: 'there', time: 2, seen: false },
      { type: 'incoming', jid: 'amy@x', id: '1', body: 'yo', time: 3, seen: false },
    ]);
    expect(s.conversations['bob@x'].unread).toBe(2);
    expect(totalUnread(s)).toBe(3);
    s = chatReducer(s, { type: 'open', jid: 'bob@x' });
    expect(s.active).toBe('bob@x');
    expect(s.conversations['bob@x'].unread).toBe(0);
    s = chatReducer(s, { type: 'incoming', jid: 'bob@x', id: '3', body: 'seen', time: 4, seen: true });
    expect(s.conversations['bob@x'].unread).toBe(0);
  });

  it('drops duplicate incoming ids and orders delayed messages by time', () => {
    const s = run([
      { type: 'incoming', jid: 'bob@x', id: 'a', body: 'new', time: 100, seen: true },
      { type: 'incoming', jid: 'bob@x', id: 'a', body: 'new', time: 100, seen: true },
      { type: 'incoming', jid: 'bob@x', id: 'b', body: 'old', time: 50, seen: true },
    ]);
    expect(s.conversations['bob@x'].messages.map((m) => m.body)).toEqual(['old', 'new']);
  });

  it('marks outgoing messages delivered on a receipt, failed on an error', () => {
    let s = run([
      { type: 'outgoing', jid: 'bob@x', id: 'm1', body: 'one', time: 1 },
      { type: 'outgoing', jid: 'bob@x', id: 'm2', body: 'two', time: 2 },
      { type: 'receipt', jid: 'bob@x', id: 'm1' },
      { type: 'failed', jid: 'bob@x', id: 'm2', error: 'recipient unavailable' },
    ]);
    const [m1, m2] = s.conversations['bob@x'].messages;
    expect(m1.status).toBe('delivered');
    expect(m2.status).toBe('error');
    expect(m2.error).toBe('recipient unavailable');
    s = chatReducer(s, { type: 'receipt', jid: 'bob@x', id: 'nope' });
    expect(s.conversations['bob@x'].messages[0].status).toBe('delivered');
  });

  it('tracks the contact chat state; a message ends typing', () => {
    let s = run([{ type: 'chat-state', jid: 'bob@x', state: 'composing' }]);
    expect(s.conversations['bob@x'].theirState).toBe('composing');
    s = chatReducer(s, { type: 'incoming', jid: 'bob@x', id: '1', body: 'done', time: 1, seen: false });
    expect(s.conversations['bob@x'].theirState).toBe('active');
  });

  it('formats times relative to now', () => {
    const now = new Date(2026, 0, 15, 12, 0).getTime();
    expect(formatTime(new Date(2026, 0, 15, 9, 5).getTime(), now)).toMatch(/09.05|9.05/);
    expect(formatTime(new Date(2025, 5, 1, 9, 5).getTime(), now)).toMatch(/2025/);
  });
});

describe('history', () => {
  it('merges archived messages in time order without duplicates or unread counts', () => {
    let s = run([{ type: 'incoming', jid: 'bob@x', id: 'live', body: 'now', time: 100, seen: false }]);
    s = chatReducer(s, {
      type: 'history',
      jid: 'bob@x',
      items: [
        { id: 'a', dir: 'out', body: 'first', time: 10 },
        { id: 'b', dir: 'in', body: 'second', time: 20 },
        { id: 'live', dir: 'in', body: 'now', time: 100 },
      ],
    });
    const c = s.conversations['bob@x'];
    expect(c.messages.map((m) => m.body)).toEqual(['first', 'second', 'now']);
    expect(c.messages[0].dir).toBe('out');
    expect(c.unread).toBe(1);
    // Loading the same page again changes nothing.
    const again = chatReducer(s, { type: 'history', jid: 'bob@x', items: [{ id: 'a', dir: 'out', body: 'first', time: 10 }] });
    expect(again).toBe(s);
  });
});

describe('archive paging', () => {
  it('tracks the oldest archive id until the archive is complete', () => {
    let s = run([{ type: 'open', jid: 'bob@x' }]);
    expect(s.conversations['bob@x'].archive).toBeNull();
    s = chatReducer(s, { type: 'history', jid: 'bob@x', items: [{ id: 'c', dir: 'in', body: 'third', time: 30 }] });
    s = chatReducer(s, { type: 'archive-page', jid: 'bob@x', first: 'arch-3', complete: false, older: false });
    expect(s.conversations['bob@x'].archive).toEqual({ oldest: 'arch-3', complete: false, loading: false });
    s = chatReducer(s, { type: 'archive-loading', jid: 'bob@x' });
    expect(s.conversations['bob@x'].archive?.loading).toBe(true);
    s = chatReducer(s, { type: 'history', jid: 'bob@x', older: true, items: [{ id: 'a', dir: 'out', body: 'first', time: 10 }, { id: 'b', dir: 'in', body: 'second', time: 20 }] });
    s = chatReducer(s, { type: 'archive-page', jid: 'bob@x', first: 'arch-1', complete: true, older: true });
    const c = s.conversations['bob@x'];
    expect(c.messages.map((m) => m.body)).toEqual(['first', 'second', 'third']);
    expect(c.archive).toEqual({ oldest: 'arch-1', complete: true, loading: false });
  });

  it('puts an older page before messages stamped in the same second', () => {
    let s = run([{ type: 'history', jid: 'bob@x', items: [{ id: '11', dir: 'in', body: 'm11', time: 5000 }, { id: '12', dir: 'in', body: 'm12', time: 5000 }] }]);
    s = chatReducer(s, { type: 'history', jid: 'bob@x', older: true, items: [{ id: '1', dir: 'in', body: 'm1', time: 5000 }, { id: '2', dir: 'in', body: 'm2', time: 5000 }] });
    expect(s.conversations['bob@x'].messages.map((m) => m.body)).toEqual(['m1', 'm2', 'm11', 'm12']);
  });

  it('the newest page again (after a reconnect) keeps how far back we paged', () => {
    let s = run([
      { type: 'archive-page', jid: 'bob@x', first: 'arch-50', complete: false, older: false },
      { type: 'archive-page', jid: 'bob@x', first: 'arch-1', complete: true, older: true },
      { type: 'archive-page', jid: 'bob@x', first: 'arch-52', complete: false, older: false },
    ]);
    expect(s.conversations['bob@x'].archive).toEqual({ oldest: 'arch-1', complete: true, loading: false });
    // An empty archive is complete; a later newest page with messages starts paging from it.
    s = run([
      { type: 'archive-page', jid: 'amy@x', first: null, complete: true, older: false },
      { type: 'archive-page', jid: 'amy@x', first: 'arch-9', complete: true, older: false },
    ]);
    expect(s.conversations['amy@x'].archive).toEqual({ oldest: 'arch-9', complete: true, loading: false });
    s = chatReducer(s, { type: 'archive-failed', jid: 'nobody@x' });
    expect(s.conversations['nobody@x']).toBeUndefined();
  });
});
