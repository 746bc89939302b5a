// Conversation pane: message list with timestamps and delivery marks, older messages from the archive on demand, typing indicator, and the composer.
import { h, onScrollToTop, updateScrollList } from './dom';
import type { AppState } from '../store';
import { formatTime, type ChatMessage } from '../state/chat';
import { bestPresence, displayName, SHOW_LABELS } from '../state/roster';
import { presenceDot } from './sidebar';
import { attachControl, messageBody } from './attachment';

export interface ConversationActions {
  send(jid: string, body: string): void;
  /** Uploads a file and shares its URL (XEP-0363, XEP-0066); settles when done or failed. */
  attach(jid: string, file: File): Promise<void>;
  typing(jid: string, state: 'composing' | 'paused' | 'active'): void;
  back(): void;
  /** Fetch the archive page before the oldest message shown. */
  loadOlder(jid: string): void;
}

/** The top of a message list: a "Load older messages" button while the archive has more. */
export function olderItem(archive: { complete: boolean; loading: boolean } | null, hasMessages: boolean, onLoad: () => void): HTMLElement | null {
  if (!archive) return null;
  if (archive.complete) {
    return hasMessages ? h('li', { class: 'history-start', 'aria-hidden': 'true' }, 'Start of the conversation') : null;
  }
  return h(
    'li',
    { class: 'load-older' },
    h(
      'button',
      { type: 'button', class: 'small load-older-button', 'data-focus-key': 'load-older', disabled: archive.loading, 'aria-busy': archive.loading ? 'true' : null, onclick: onLoad },
      archive.loading ? 'Loading older messages…' : 'Load older messages',
    ),
  );
}

export interface ConversationView {
  root: HTMLElement;
  render(s: AppState): void;
  focusComposer(): void;
}

const PAUSE_AFTER_MS = 5000;

function messageItem(m: ChatMessage): HTMLElement {
  const mark =
    m.dir === 'out'
      ? h(
          'span',
          {
            class: 'receipt',
            title: m.status === 'delivered' ? 'Delivered' : m.status === 'error' ? `Not delivered: ${m.error ?? ''}` : 'Sent',
            'aria-label': m.status === 'delivered' ? 'Delivered' : m.status === 'error' ? 'Not delivered' : 'Sent',
          },
          m.status === 'delivered' ? '✓✓' : m.status === 'error' ? '⚠' : '✓',
        )
      : null;
  return h(
    'li',
    { class: 'message', 'data-dir': m.dir, 'data-status': m.status, 'data-id': m.id },
    h('div', { class: 'bubble' }, messageBody(m.body, m.file)),
    h(
      'div',
      { class: 'meta' },
      h('time', { datetime: new Date(m.time).toISOString(), title: new Date(m.time).toLocaleString() }, formatTime(m.time)),
      mark,
      m.status === 'error' && m.error ? h('span', { class: 'error-text' }, m.error) : null,
    ),
  );
}

export function conversationView(actions: ConversationActions): ConversationView {
  const back = h('button', { type: 'button', id: 'chat-back', class: 'ghost back', 'aria-label': 'Back to contacts', onclick: () => actions.back() }, '←');
  const title = h('h2', { id: 'chat-title', class: 'chat-title' });
  const sub = h('div', { id: 'chat-subtitle', class: 'chat-subtitle' });
  const dot = h('span', { class: 'chat-presence' });
  const typing = h('p', { id: 'typing', class: 'typing', 'aria-live': 'polite' });
  const list = h('ol', { id: 'messages', class: 'messages', 'aria-label': 'Messages', tabindex: 0 });
  const composer = h('textarea', { id: 'composer', rows: 1, placeholder: 'Write a message…', 'aria-label': 'Message', enterkeyhint: 'send' });
  const send = h('button', { type: 'submit', id: 'send', class: 'primary' }, 'Send');
  const attach = attachControl('attach', (file) => (active ? actions.attach(active, file) : Promise.resolve()));
  const form = h('form', { id: 'composer-form', class: 'composer' }, ...attach.elements, composer, send);
  const empty = h('div', { id: 'no-chat', class: 'no-chat' }, h('p', {}, 'Choose a contact or a group chat to start.'));
  const pane = h(
    'section',
    { id: 'chat', class: 'chat', hidden: true, 'aria-labelledby': 'chat-title' },
    h('header', { class: 'chat-header' }, back, h('div', { class: 'chat-heading' }, h('div', { class: 'title-row' }, dot, title), sub)),
    list,
    typing,
    form,
  );
  const root = h('main', { id: 'main', class: 'main' }, empty, pane);

  let active: string | null = null;
  let composing = false;
  let pauseTimer: ReturnType<typeof setTimeout> | null = null;
  let renderedCount = -1;
  let renderedFor: string | null = null;
  let renderedKey = '';
  let renderedLast = '';
  let canLoadOlder = false;
  onScrollToTop(list, () => {
    if (active && canLoadOlder) actions.loadOlder(active);
  });

  const stopTyping = (state: 'paused' | 'active') => {
    if (pauseTimer) clearTimeout(pauseTimer);
    pauseTimer = null;
    if (composing && active) actions.typing(active, state);
    composing = false;
  };

  composer.addEventListener('input', () => {
    if (!active) return;
    composer.style.height = 'auto';
    composer.style.height = `${Math.min(composer.scrollHeight, 160)}px`;
    if (!composer.value) return stopTyping('active');
    if (!composing) {
      composing = true;
      actions.typing(active, 'composing');
    }
    if (pauseTimer) clearTimeout(pauseTimer);
    pauseTimer = setTimeout(() => stopTyping('paused'), PAUSE_AFTER_MS);
  });
  composer.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    } else if (e.key === 'Escape') {
      actions.back();
    }
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const body = composer.value.trim();
    if (!active || !body) return;
    if (pauseTimer) clearTimeout(pauseTimer);
    pauseTimer = null;
    composing = false; // the message itself carries <active/>
    actions.send(active, body);
    composer.value = '';
    composer.style.height = 'auto';
  });

  return {
    root,
    focusComposer: () => composer.focus(),
    render(s) {
      const jid = s.chats.active;
      if (jid !== active) {
        if (active) stopTyping('active');
        active = jid;
        composer.value = '';
      }
      root.classList.toggle('has-chat', !!jid || !!s.rooms.active);
      empty.hidden = !!jid || !!s.rooms.active;
      pane.hidden = !jid;
      if (!jid) return;
      const contact = s.roster.contacts[jid];
      const conv = s.chats.conversations[jid];
      const p = contact ? bestPresence(contact) : { show: 'offline' as const, status: '' };
      title.textContent = contact ? displayName(contact) : jid;
      sub.textContent = `${jid} · ${SHOW_LABELS[p.show]}${p.status ? ` — ${p.status}` : ''}`;
      dot.replaceChildren(presenceDot(p.show, SHOW_LABELS[p.show]));
      const who = contact ? displayName(contact) : jid;
      const state = conv?.theirState;
      typing.textContent = state === 'composing' ? `${who} is typing…` : state === 'paused' ? `${who} stopped typing` : '';
      typing.dataset.state = state ?? '';

      const messages = conv?.messages ?? [];
      const archive = conv?.archive ?? null;
      canLoadOlder = !!archive && !archive.complete && !archive.loading;
      const key = `${archive ? `${archive.complete}:${archive.loading}` : '-'}|${messages.map((m) => `${m.id}:${m.status}`).join(',')}`;
      if (renderedFor !== jid || key !== renderedKey) {
        const last = messages.length ? `${messages[messages.length - 1].id}:${messages[messages.length - 1].time}` : '';
        // Older messages were added above: keep the reader's place; a new one below: show it.
        const how =
          renderedFor !== jid ? 'bottom' : messages.length > renderedCount ? (last === renderedLast ? 'keep' : 'bottom') : 'auto';
        const older = olderItem(archive, messages.length > 0, () => actions.loadOlder(jid));
        updateScrollList(list, [...(older ? [older] : []), ...messages.map(messageItem)], how);
        renderedFor = jid;
        renderedKey = key;
        renderedCount = messages.length;
        renderedLast = last;
      }
      send.disabled = s.link.state !== 'online';
      attach.setEnabled(s.link.state === 'online');
    },
  };
}
