// The signed-in app: wires the XMPP client's events into the store and the views' actions into the client.
import { h } from './dom';
import { Store, initialState } from '../store';
import { sidebarView } from './sidebar';
import { conversationView } from './conversation';
import { roomView } from './room';
import { completeJid, parseJid } from '../jid';
import { totalUnread } from '../state/chat';
import { joinErrorMessage, oldestArchiveId, roomJidFromInput, roomUnread, type Invite } from '../state/rooms';
import { forgetRooms, loadRooms, saveRooms } from '../saved-rooms';
import type { XmppClient, ConnectionEvent } from '../xmpp/connection';

export interface AppView {
  root: HTMLElement;
  destroy(): void;
}

export function appView(client: XmppClient, opts: { onSignedOut(reason: string, authFailed: boolean): void }): AppView {
  const store = new Store(initialState(client.jid.split('/')[0]));
  store.set({ link: { state: 'online', message: '', transport: client.transport ?? '' } });
  const domain = parseJid(client.jid)?.domain ?? 'localhost';
  let noticeTimer: ReturnType<typeof setTimeout> | null = null;

  const notify = (text: string, error = false) => {
    store.set({ notice: { text, error } });
    if (noticeTimer) clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => store.set({ notice: null }), error ? 10000 : 5000);
  };
  const guard = (f: () => void | Promise<void>) => {
    try {
      const r = f();
      if (r instanceof Promise) r.catch((e) => notify(String(e instanceof Error ? e.message : e), true));
    } catch (e) {
      notify(String(e instanceof Error ? e.message : e), true);
    }
  };
  const visible = () => document.visibilityState === 'visible';

  /** Conversations whose archive was fetched on this connection. */
  const historyLoaded = new Set<string>();
  /** The newest page of the conversation's archive (on opening it, and after a reconnection). */
  const loadNewest = (jid: string) => {
    historyLoaded.add(jid);
    client
      .loadHistory(jid)
      .then((page) => store.chat({ type: 'archive-page', jid, first: page.first, complete: page.complete, older: false }))
      .catch(() => historyLoaded.delete(jid));
  };
  /** The archive page before the oldest message shown ("Load older messages"). */
  const loadOlderChat = (jid: string) => {
    const archive = store.state.chats.conversations[jid]?.archive;
    if (!archive || archive.complete || archive.loading || !archive.oldest) return;
    store.chat({ type: 'archive-loading', jid });
    client
      .loadHistory(jid, archive.oldest)
      .then((page) => store.chat({ type: 'archive-page', jid, first: page.first, complete: page.complete, older: true }))
      .catch((e) => {
        store.chat({ type: 'archive-failed', jid });
        notify(`Could not load older messages: ${e instanceof Error ? e.message : e}`, true);
      });
  };

  // --- group chats -------------------------------------------------------
  const account = store.state.me.jid;
  let signingOut = false;
  // Rooms joined before a page reload: joined again once online (the 'online' event below).
  for (const r of loadRooms(account)) store.room({ type: 'join', jid: r.jid, nick: r.nick, remembered: true });
  let savedKey = '';
  const persistRooms = () => {
    if (signingOut) return;
    const list = Object.values(store.state.rooms.rooms)
      .filter((r) => r.everJoined)
      .map((r) => ({ jid: r.jid, nick: r.nick }));
    const key = JSON.stringify(list);
    if (key === savedKey) return;
    savedKey = key;
    try {
      saveRooms(account, list);
    } catch {
      /* storage full or disabled: rooms are simply not remembered */
    }
  };
  /**
   * A room that someone else is creating is locked until they configure it (XEP-0045 §10.1.1): the
   * join is refused with item-not-found. Try again a few times before calling it an error.
   */
  const lockedRetries = new Map<string, { attempts: number; timer: ReturnType<typeof setTimeout> | null }>();
  const LOCKED_RETRY_MS = [1000, 2000, 4000];
  const cancelRetry = (jid: string) => {
    const r = lockedRetries.get(jid);
    if (r?.timer) clearTimeout(r.timer);
    lockedRetries.delete(jid);
  };
  /** True when a retry was scheduled (the refusal is not shown yet). */
  const retryLocked = (jid: string): boolean => {
    const r = lockedRetries.get(jid) ?? { attempts: 0, timer: null };
    if (r.attempts >= LOCKED_RETRY_MS.length) return false;
    const delay = LOCKED_RETRY_MS[r.attempts++];
    r.timer = setTimeout(() => {
      r.timer = null;
      const room = store.state.rooms.rooms[jid];
      if (room?.status === 'joining' && client.online) client.joinRoom(jid, room.nick, { password: room.password || undefined });
    }, delay);
    lockedRetries.set(jid, r);
    return true;
  };
  const joinRoom = (jid: string, nick: string, password?: string) => {
    cancelRetry(jid);
    store.room({ type: 'join', jid, nick, password });
    client.joinRoom(jid, nick, { password });
  };
  const openRoom = (jid: string) => {
    store.chat({ type: 'close' });
    store.room({ type: 'open', jid });
    room.focusComposer();
  };
  const leaveRoom = (jid: string) => {
    const wasActive = store.state.rooms.active === jid;
    cancelRetry(jid);
    client.leaveRoom(jid);
    store.room({ type: 'leave', jid });
    if (wasActive) document.getElementById('join-room-open')?.focus();
  };
  const localpart = account.split('@')[0] ?? '';
  const acceptInvite = (inv: Invite) =>
    guard(() => {
      store.room({ type: 'invite-handled', room: inv.room });
      const known = store.state.rooms.rooms[inv.room];
      if (known?.status !== 'joined') joinRoom(inv.room, known?.nick ?? localpart, inv.password || undefined);
      openRoom(inv.room);
    });
  const loadOlderRoom = (jid: string) => {
    const r = store.state.rooms.rooms[jid];
    if (!r || r.archive.complete || r.archive.loading) return;
    store.room({ type: 'archive-loading', jid });
    client
      .loadRoomHistory(jid, oldestArchiveId(r) ?? '')
      .then((page) => store.room({ type: 'archive-page', jid, items: page.items, first: page.first, complete: page.complete }))
      .catch((e) => {
        store.room({ type: 'archive-failed', jid });
        notify(`Could not load older messages: ${e instanceof Error ? e.message : e}`, true);
      });
  };
  /** Joins every remembered room again (after signing in, and after each reconnection). */
  const rejoinRooms = () => {
    for (const r of Object.values(store.state.rooms.rooms)) {
      if (r.status === 'error' || r.status === 'password') continue;
      const lastLive = [...r.messages].reverse().find((m) => m.status !== 'pending');
      cancelRetry(r.jid);
      store.room({ type: 'join', jid: r.jid, nick: r.nick });
      // Only the room history we missed: what came after the last message we have (with a margin for
      // clock differences: live messages carry our clock's time; repeats are dropped by stanza id).
      client.joinRoom(r.jid, r.nick, { password: r.password || undefined, since: lastLive ? lastLive.time - 60_000 : undefined });
    }
  };

  const sidebar = sidebarView({
    setPresence: (show, status) => {
      store.set({ me: { ...store.state.me, show, status } });
      client.setPresence(show, status);
    },
    signOut: () => {
      // Signing out on purpose forgets the rooms on this device, as it forgets the session.
      signingOut = true;
      forgetRooms(account);
      client.signOut();
    },
    openChat: (jid) => {
      store.room({ type: 'close' });
      store.chat({ type: 'open', jid });
      conversation.focusComposer();
      // Earlier messages from the archive, once per conversation and connection.
      if (!historyLoaded.has(jid)) loadNewest(jid);
    },
    joinRoom: (input, nick) =>
      guard(async () => {
        const service = await client.discoverMucService();
        const jid = roomJidFromInput(input, service);
        if (!jid) return notify(`“${input}” is not a valid room name or address.`, true);
        const known = store.state.rooms.rooms[jid];
        if (known?.status === 'joined') {
          if (known.nick !== nick) notify(`You are already in ${jid} as ${known.nick}.`);
        } else {
          joinRoom(jid, nick);
        }
        openRoom(jid);
      }),
    openRoom,
    leaveRoom: (jid) => guard(() => leaveRoom(jid)),
    acceptInvite,
    dismissInvite: (roomJid) => store.room({ type: 'invite-handled', room: roomJid }),
    addContact: (input) =>
      guard(async () => {
        const jid = completeJid(input, domain);
        if (!jid) return notify(`“${input}” is not a valid address.`, true);
        if (jid === store.state.me.jid) return notify('That is your own address.', true);
        await client.addContact(jid);
        notify(`Request sent to ${jid}.`);
      }),
    accept: (jid) =>
      guard(() => {
        const c = store.state.roster.contacts[jid];
        const haveTheirs = c && (c.subscription === 'to' || c.subscription === 'both' || c.ask);
        client.acceptSubscription(jid, !haveTheirs);
        store.roster({ type: 'request-handled', jid });
      }),
    deny: (jid) =>
      guard(() => {
        client.denySubscription(jid);
        store.roster({ type: 'request-handled', jid });
      }),
    remove: (jid) =>
      guard(async () => {
        if (!confirm(`Remove ${jid} from your contacts?`)) return;
        await client.removeContact(jid);
        if (store.state.chats.active === jid) store.chat({ type: 'close' });
      }),
  });

  const conversation = conversationView({
    send: (jid, body) =>
      guard(() => {
        const id = client.sendMessage(jid, body);
        store.chat({ type: 'outgoing', jid, id, body, time: Date.now() });
      }),
    attach: (jid, file) =>
      client.uploadFile(file).then(
        (url) => {
          const id = client.sendMessage(jid, url, true);
          store.chat({ type: 'outgoing', jid, id, body: url, time: Date.now(), file: true });
        },
        (e) => notify(`Could not send ${file.name}: ${e instanceof Error ? e.message : e}`, true),
      ),
    typing: (jid, state) => client.sendChatState(jid, state),
    back: () => {
      const jid = store.state.chats.active;
      store.chat({ type: 'close' });
      if (jid) document.querySelector<HTMLElement>(`[data-focus-key="open:${CSS.escape(jid)}"]`)?.focus();
    },
    loadOlder: loadOlderChat,
  });

  const room = roomView({
    send: (jid, body) =>
      guard(() => {
        const id = client.sendGroupchat(jid, body);
        store.room({ type: 'outgoing', jid, msgId: id, body, time: Date.now() });
      }),
    attach: (jid, file) =>
      client.uploadFile(file).then(
        (url) => {
          const id = client.sendGroupchat(jid, url, true);
          store.room({ type: 'outgoing', jid, msgId: id, body: url, time: Date.now(), file: true });
        },
        (e) => notify(`Could not send ${file.name}: ${e instanceof Error ? e.message : e}`, true),
      ),
    leave: (jid) => guard(() => leaveRoom(jid)),
    rejoin: (jid, nick, password) => guard(() => joinRoom(jid, nick, password)),
    loadOlder: loadOlderRoom,
    back: () => {
      const jid = store.state.rooms.active;
      store.room({ type: 'close' });
      if (jid) document.querySelector<HTMLElement>(`[data-focus-key="room:${CSS.escape(jid)}"]`)?.focus();
    },
  });
  conversation.root.append(room.root);

  const banner = h('div', { id: 'connection-banner', class: 'banner', role: 'status', 'aria-live': 'polite', hidden: true });
  const reconnectBtn = h('button', { type: 'button', class: 'small', onclick: () => client.reconnectNow() }, 'Reconnect now');
  const root = h('div', { id: 'app-shell', class: 'shell' }, banner, h('div', { class: 'layout' }, sidebar.root, conversation.root));

  const render = () => {
    const s = store.state;
    sidebar.render(s);
    conversation.render(s);
    room.render(s);
    root.classList.toggle('chat-open', !!s.chats.active || !!s.rooms.active);
    banner.hidden = s.link.state === 'online';
    banner.dataset.state = s.link.state;
    if (s.link.state !== 'online') banner.replaceChildren(h('span', {}, s.link.message), s.link.state === 'reconnecting' ? reconnectBtn : '');
    const unread = totalUnread(s.chats) + roomUnread(s.rooms);
    document.title = unread ? `(${unread}) Rookery` : 'Rookery';
  };
  store.subscribe(render);
  store.subscribe(persistRooms);

  const onEvent = (e: ConnectionEvent) => {
    const st = store.state;
    switch (e.type) {
      case 'online': {
        store.set({ link: { state: 'online', message: '', transport: e.transport } });
        // After a (re)connection, fill the open conversation from the archive.
        historyLoaded.clear();
        const open = store.state.chats.active;
        if (open) loadNewest(open);
        rejoinRooms();
        break;
      }
      case 'reconnecting':
        store.roster({ type: 'all-offline' });
        store.room({ type: 'offline' });
        store.set({
          link: {
            state: 'reconnecting',
            message: `Connection lost (${e.reason}). Reconnecting in ${Math.round(e.delayMs / 1000)} s…`,
            transport: st.link.transport,
          },
        });
        break;
      case 'offline':
        opts.onSignedOut(e.reason, e.authFailed);
        break;
      case 'roster':
        store.roster({ type: 'roster-loaded', items: e.items });
        break;
      case 'roster-push':
        store.roster({ type: 'roster-push', item: e.item });
        break;
      case 'available':
        if (e.jid === st.me.jid) break;
        store.roster({ type: 'available', jid: e.jid, resource: e.resource, show: e.show, status: e.status, priority: e.priority });
        break;
      case 'unavailable':
        store.roster({ type: 'unavailable', jid: e.jid, resource: e.resource, status: e.status });
        break;
      case 'subscribe': {
        const c = st.roster.contacts[e.jid];
        // Already approved (they re-asked), or we asked them first (a mutual add): answer for the person.
        if (c && (c.subscription !== 'none' || c.ask)) client.acceptSubscription(e.jid, false);
        else store.roster({ type: 'subscribe-request', jid: e.jid });
        break;
      }
      case 'subscribed':
        notify(`${e.jid} accepted your request.`);
        break;
      case 'unsubscribed':
        if (st.roster.contacts[e.jid]?.ask) notify(`${e.jid} declined your request.`, true);
        break;
      case 'message':
        store.chat({ type: 'incoming', jid: e.jid, id: e.id, body: e.body, time: e.time, seen: st.chats.active === e.jid && visible(), file: e.file });
        break;
      case 'receipt':
        store.chat({ type: 'receipt', jid: e.jid, id: e.id });
        break;
      case 'chat-state':
        store.chat({ type: 'chat-state', jid: e.jid, state: e.state });
        break;
      case 'message-error':
        store.chat({ type: 'failed', jid: e.jid, id: e.id, error: e.text });
        break;
      case 'history':
        store.chat({ type: 'history', jid: e.jid, items: e.items, older: e.older });
        break;
      case 'muc-presence': {
        const p = e.presence;
        if (p.kind === 'error') {
          const condition = p.error?.condition ?? '';
          const status = st.rooms.rooms[p.room]?.status;
          // In the room already: a refused presence update, not a refused join.
          if (status === 'joined') notify(`${p.room}: ${joinErrorMessage(condition, p.error?.text)}`, true);
          else if (status === 'joining' && condition === 'item-not-found' && retryLocked(p.room)) break;
          store.room({ type: 'join-error', jid: p.room, condition, text: p.error?.text ?? '' });
        } else if (p.kind === 'available') {
          if (p.self) cancelRetry(p.room);
          store.room(p.self ? { type: 'self-presence', jid: p.room, occupant: p.occupant, codes: p.codes } : { type: 'occupant-available', jid: p.room, occupant: p.occupant });
        } else {
          store.room({ type: 'occupant-unavailable', jid: p.room, nick: p.nick, codes: p.codes, newNick: p.newNick, self: p.self, reason: p.reason, destroyed: p.destroyed });
        }
        break;
      }
      case 'muc-message':
        store.room({ type: 'message', jid: e.room, message: e.message, seen: st.rooms.active === e.room && visible() });
        break;
      case 'muc-subject':
        store.room({ type: 'subject', jid: e.room, subject: e.subject, by: e.by });
        break;
      case 'muc-message-error':
        store.room({ type: 'send-failed', jid: e.room, msgId: e.id, error: e.text });
        break;
      case 'muc-invite':
        store.room({ type: 'invite', invite: e.invite });
        break;
    }
  };
  const off = client.on(onEvent);
  const onVisible = () => {
    const jid = store.state.chats.active;
    if (visible() && jid) store.chat({ type: 'seen', jid });
    const roomJid = store.state.rooms.active;
    if (visible() && roomJid) store.room({ type: 'seen', jid: roomJid });
  };
  document.addEventListener('visibilitychange', onVisible);
  render();

  return {
    root,
    destroy() {
      off();
      for (const jid of [...lockedRetries.keys()]) cancelRetry(jid);
      document.removeEventListener('visibilitychange', onVisible);
      if (noticeTimer) clearTimeout(noticeTimer);
      document.title = 'Rookery';
    },
  };
}
