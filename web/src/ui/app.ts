// The signed-in app: wires the XMPP client's events into the store and the views' actions into the client.
import { h } from './dom';
import { Store, initialState } from '../store';
import { sidebarView } from './sidebar';
import { conversationView } from './conversation';
import { completeJid, parseJid } from '../jid';
import { totalUnread } from '../state/chat';
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
  const sidebar = sidebarView({
    setPresence: (show, status) => {
      store.set({ me: { ...store.state.me, show, status } });
      client.setPresence(show, status);
    },
    signOut: () => client.signOut(),
    openChat: (jid) => {
      store.chat({ type: 'open', jid });
      conversation.focusComposer();
      // Earlier messages from the archive, once per conversation and connection.
      if (!historyLoaded.has(jid)) {
        historyLoaded.add(jid);
        client.loadHistory(jid).catch(() => historyLoaded.delete(jid));
      }
    },
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
    typing: (jid, state) => client.sendChatState(jid, state),
    back: () => {
      const jid = store.state.chats.active;
      store.chat({ type: 'close' });
      if (jid) document.querySelector<HTMLElement>(`[data-focus-key="open:${CSS.escape(jid)}"]`)?.focus();
    },
  });

  const banner = h('div', { id: 'connection-banner', class: 'banner', role: 'status', 'aria-live': 'polite', hidden: true });
  const reconnectBtn = h('button', { type: 'button', class: 'small', onclick: () => client.reconnectNow() }, 'Reconnect now');
  const root = h('div', { id: 'app-shell', class: 'shell' }, banner, h('div', { class: 'layout' }, sidebar.root, conversation.root));

  const render = () => {
    const s = store.state;
    sidebar.render(s);
    conversation.render(s);
    root.classList.toggle('chat-open', !!s.chats.active);
    banner.hidden = s.link.state === 'online';
    banner.dataset.state = s.link.state;
    if (s.link.state !== 'online') banner.replaceChildren(h('span', {}, s.link.message), s.link.state === 'reconnecting' ? reconnectBtn : '');
    const unread = totalUnread(s.chats);
    document.title = unread ? `(${unread}) Rookery` : 'Rookery';
  };
  store.subscribe(render);

  const onEvent = (e: ConnectionEvent) => {
    const st = store.state;
    switch (e.type) {
      case 'online': {
        store.set({ link: { state: 'online', message: '', transport: e.transport } });
        // After a (re)connection, fill the open conversation from the archive.
        historyLoaded.clear();
        const open = store.state.chats.active;
        if (open) {
          historyLoaded.add(open);
          client.loadHistory(open).catch(() => historyLoaded.delete(open));
        }
        break;
      }
      case 'reconnecting':
        store.roster({ type: 'all-offline' });
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
        store.chat({ type: 'incoming', jid: e.jid, id: e.id, body: e.body, time: e.time, seen: st.chats.active === e.jid && visible() });
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
        store.chat({ type: 'history', jid: e.jid, items: e.items });
        break;
    }
  };
  const off = client.on(onEvent);
  const onVisible = () => {
    const jid = store.state.chats.active;
    if (visible() && jid) store.chat({ type: 'seen', jid });
  };
  document.addEventListener('visibilitychange', onVisible);
  render();

  return {
    root,
    destroy() {
      off();
      document.removeEventListener('visibilitychange', onVisible);
      if (noticeTimer) clearTimeout(noticeTimer);
      document.title = 'Rookery';
    },
  };
}
