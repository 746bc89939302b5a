// Group chat pane: room title and subject, join status and errors (password, nickname taken), messages with sender nicknames, occupants with roles, composer, leave.
import { h, onScrollToTop, replaceChildrenKeepFocus, updateScrollList } from './dom';
import type { AppState } from '../store';
import { formatTime } from '../state/chat';
import { SHOW_LABELS } from '../state/roster';
import { occupantBadges, roomName, sortedOccupants, type Occupant, type Room, type RoomMessage } from '../state/rooms';
import { presenceDot } from './sidebar';
import { olderItem } from './conversation';
import { attachControl, messageBody } from './attachment';

export interface RoomActions {
  send(room: string, body: string): void;
  /** Uploads a file and shares its URL with the room; settles when done or failed. */
  attach(room: string, file: File): Promise<void>;
  leave(room: string): void;
  /** Join again: after an error, with another nickname or a password. */
  rejoin(room: string, nick: string, password?: string): void;
  loadOlder(room: string): void;
  back(): void;
}

export interface RoomView {
  root: HTMLElement;
  render(s: AppState): void;
  focusComposer(): void;
}

/** A stable colour per nickname, so speakers are easy to tell apart. */
function nickHue(nick: string): number {
  let h = 0;
  for (const c of nick) h = (h * 31 + c.codePointAt(0)!) % 360;
  return h;
}

/** `showSender`: false for a message that follows one from the same person shortly before. */
function messageItem(m: RoomMessage, showSender: boolean): HTMLElement {
  const dir = m.mine ? 'out' : 'in';
  const mark =
    m.mine && m.status !== 'sent'
      ? h(
          'span',
          { class: 'receipt', title: m.status === 'error' ? `Not sent: ${m.error ?? ''}` : 'Sending', 'aria-label': m.status === 'error' ? 'Not sent' : 'Sending' },
          m.status === 'error' ? '⚠' : '…',
        )
      : null;
  return h(
    'li',
    {
      class: 'message',
      'data-dir': dir,
      'data-status': m.status === 'sent' ? 'delivered' : m.status,
      'data-nick': m.nick,
      'data-history': m.history ? 'true' : null,
      'data-private': m.private ? 'true' : null,
      'data-id': m.stanzaId || m.msgId,
    },
    m.mine || !showSender ? null : h('span', { class: 'sender', style: `--nick-hue: ${nickHue(m.nick)}` }, m.nick, m.private ? h('span', { class: 'private-mark' }, ' (private)') : null),
    h('div', { class: 'bubble' }, messageBody(m.body, m.file)),
    h(
      'div',
      { class: 'meta' },
      h('time', { datetime: new Date(m.time).toISOString(), title: new Date(m.time).toLocaleString() }, formatTime(m.time)),
      m.history ? h('span', { class: 'history-mark', title: 'Sent before you joined' }, 'history') : null,
      mark,
      m.status === 'error' && m.error ? h('span', { class: 'error-text' }, m.error) : null,
    ),
  );
}

function occupantItem(o: Occupant, me: string): HTMLElement {
  const badges = occupantBadges(o);
  const label = `${o.nick}${o.nick === me ? ' (you)' : ''}, ${o.role}${o.affiliation !== 'none' ? `, ${o.affiliation}` : ''}${o.show !== 'online' ? `, ${SHOW_LABELS[o.show]}` : ''}${o.status ? `, ${o.status}` : ''}`;
  return h(
    'li',
    {
      class: 'occupant',
      'data-nick': o.nick,
      'data-role': o.role,
      'data-affiliation': o.affiliation,
      'data-self': o.nick === me ? 'true' : null,
      tabindex: -1,
      'aria-label': label,
      title: o.status || null,
    },
    presenceDot(o.show, SHOW_LABELS[o.show]),
    h('span', { class: 'occupant-nick', title: o.jid || o.nick }, o.nick, o.nick === me ? h('span', { class: 'you' }, ' (you)') : null),
    ...badges.map((b) => h('span', { class: 'badge', 'data-badge': b }, b)),
  );
}

export function roomView(actions: RoomActions): RoomView {
  const back = h('button', { type: 'button', id: 'room-back', class: 'ghost back', 'aria-label': 'Back to the list', onclick: () => actions.back() }, '←');
  const title = h('h2', { id: 'room-title', class: 'chat-title' });
  const sub = h('div', { id: 'room-subtitle', class: 'chat-subtitle' });
  const subject = h('p', { id: 'room-subject', class: 'room-subject' });
  const peopleBtn = h(
    'button',
    { type: 'button', id: 'room-occupants-toggle', class: 'small ghost people-toggle', 'aria-controls': 'room-occupants', 'aria-expanded': 'false' },
    'People',
  );
  const leaveBtn = h('button', { type: 'button', id: 'room-leave', class: 'small', onclick: () => active && actions.leave(active) }, 'Leave');

  const status = h('div', { id: 'room-status', class: 'room-status', role: 'status', 'aria-live': 'polite' });

  const list = h('ol', { id: 'room-messages', class: 'messages', 'aria-label': 'Room messages', tabindex: 0 });
  const occList = h('ul', { id: 'occupants', class: 'occupant-list' });
  const occTitle = h('h3', { class: 'section-title', id: 'occupants-title' }, 'People');
  const occupants = h('aside', { id: 'room-occupants', class: 'occupants', 'aria-labelledby': 'occupants-title' }, occTitle, occList);

  const composer = h('textarea', { id: 'room-composer', rows: 1, placeholder: 'Write to the room…', 'aria-label': 'Message to the room', enterkeyhint: 'send' });
  const send = h('button', { type: 'submit', id: 'room-send', class: 'primary' }, 'Send');
  const attach = attachControl('room-attach', (file) => (active ? actions.attach(active, file) : Promise.resolve()));
  const form = h('form', { id: 'room-composer-form', class: 'composer' }, ...attach.elements, composer, send);

  const pane = h(
    'section',
    { id: 'room', class: 'chat room', hidden: true, 'aria-labelledby': 'room-title' },
    h(
      'header',
      { class: 'chat-header' },
      back,
      h('div', { class: 'chat-heading' }, h('div', { class: 'title-row' }, h('span', { class: 'room-icon', 'aria-hidden': 'true' }, '#'), title), sub, subject),
      h('div', { class: 'room-actions' }, peopleBtn, leaveBtn),
    ),
    status,
    h('div', { class: 'room-body' }, list, occupants),
    form,
  );

  let active: string | null = null;
  let showPeople = false;
  let canLoadOlder = false;
  let renderedFor: string | null = null;
  let renderedKey = '';
  let renderedCount = 0;
  let renderedLast = '';
  let statusKey = '';

  peopleBtn.addEventListener('click', () => {
    showPeople = !showPeople;
    pane.classList.toggle('show-people', showPeople);
    peopleBtn.setAttribute('aria-expanded', String(showPeople));
    if (showPeople) occList.querySelector<HTMLElement>('li')?.focus();
  });
  onScrollToTop(list, () => {
    if (active && canLoadOlder) actions.loadOlder(active);
  });

  composer.addEventListener('input', () => {
    composer.style.height = 'auto';
    composer.style.height = `${Math.min(composer.scrollHeight, 160)}px`;
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
    if (!active || !body || send.disabled) return;
    actions.send(active, body);
    composer.value = '';
    composer.style.height = 'auto';
  });

  /** What to show above the messages when we are not (or not yet) in the room. */
  const statusContent = (r: Room): Node[] => {
    switch (r.status) {
      case 'joined':
        return [];
      case 'joining':
        return [h('p', { class: 'room-info' }, `Joining ${r.jid} as ${r.nick}…`)];
      case 'offline':
        return [h('p', { class: 'room-info' }, 'Offline. You will rejoin when the connection is back.')];
      case 'password': {
        const input = h('input', { id: 'room-password', type: 'password', autocomplete: 'off', 'aria-describedby': 'room-error' });
        const f = h(
          'form',
          { id: 'room-password-form', class: 'room-fix' },
          h('label', { for: 'room-password' }, 'Room password'),
          input,
          h('button', { type: 'submit', class: 'small primary' }, 'Join'),
        );
        f.addEventListener('submit', (e) => {
          e.preventDefault();
          if (!input.value) return input.focus();
          actions.rejoin(r.jid, r.nick, input.value);
        });
        return [h('p', { id: 'room-error', class: 'form-error', role: 'alert' }, r.error ?? 'This room needs a password.'), f];
      }
      case 'error': {
        const out: Node[] = [h('p', { id: 'room-error', class: 'form-error', role: 'alert' }, r.error ?? 'Not in this room.')];
        if (r.errorCondition === 'conflict' || r.errorCondition === 'jid-malformed') {
          const input = h('input', { id: 'room-nick', value: `${r.nick}_`, autocapitalize: 'none', spellcheck: 'false', 'aria-describedby': 'room-error' });
          const f = h(
            'form',
            { id: 'room-nick-form', class: 'room-fix' },
            h('label', { for: 'room-nick' }, 'Another nickname'),
            input,
            h('button', { type: 'submit', class: 'small primary' }, 'Join'),
          );
          f.addEventListener('submit', (e) => {
            e.preventDefault();
            if (!input.value.trim()) return input.focus();
            actions.rejoin(r.jid, input.value.trim());
          });
          out.push(f);
        } else {
          out.push(
            h(
              'div',
              { class: 'room-fix' },
              h('button', { type: 'button', id: 'room-retry', class: 'small primary', onclick: () => actions.rejoin(r.jid, r.nick) }, 'Try again'),
              h('button', { type: 'button', id: 'room-remove', class: 'small', onclick: () => actions.leave(r.jid) }, 'Remove from the list'),
            ),
          );
        }
        return out;
      }
    }
  };

  return {
    root: pane,
    focusComposer: () => composer.focus(),
    render(s) {
      const jid = s.rooms.active;
      const r = jid ? s.rooms.rooms[jid] : undefined;
      if (jid !== active) {
        active = jid;
        composer.value = '';
        showPeople = false;
        pane.classList.remove('show-people');
        peopleBtn.setAttribute('aria-expanded', 'false');
        statusKey = '';
      }
      pane.hidden = !r;
      if (!r) return;

      const occ = sortedOccupants(r);
      title.textContent = roomName(r.jid);
      sub.textContent = `${r.status === 'joined' ? `${occ.length} ${occ.length === 1 ? 'person' : 'people'} · you are ${r.nick} · ` : ''}${r.jid}`;
      sub.title = r.jid;
      subject.textContent = r.subject;
      subject.title = r.subject && r.subjectBy ? `Subject set by ${r.subjectBy}` : '';
      subject.hidden = !r.subject;
      peopleBtn.textContent = `People (${occ.length})`;
      pane.dataset.status = r.status;

      const joined = r.status === 'joined' && s.link.state === 'online';
      send.disabled = !joined;
      composer.disabled = !joined;
      attach.setEnabled(joined);
      composer.placeholder = joined ? 'Write to the room…' : r.status === 'joining' ? 'Joining…' : 'You are not in this room';

      // The status area holds forms: rebuilt only when what it shows changes, so typing is not lost.
      const sk = `${r.jid}|${r.status}|${r.error}|${r.nick}`;
      if (sk !== statusKey) {
        const hadFocus = status.contains(document.activeElement);
        const lost = hadFocus || document.activeElement === document.body || document.activeElement === composer;
        status.replaceChildren(...statusContent(r));
        status.hidden = status.childElementCount === 0;
        statusKey = sk;
        // Keyboard focus goes where there is something to do: a field to fix the join, or the composer once in.
        const field = status.querySelector<HTMLElement>('input');
        if (field && lost) field.focus();
        else if (joined && lost) composer.focus();
      }

      occTitle.textContent = `People (${occ.length})`;
      replaceChildrenKeepFocus(occList, occ.map((o) => occupantItem(o, r.nick)));

      const messages = r.messages;
      // Paging back starts from a message: an empty room has nothing older to offer.
      const archive = r.messages.length ? r.archive : null;
      canLoadOlder = !!archive && !archive.complete && !archive.loading;
      const key = `${archive ? `${archive.complete}:${archive.loading}` : '-'}|${messages.map((m) => `${m.stanzaId}:${m.msgId}:${m.status}`).join(',')}`;
      if (renderedFor !== r.jid || key !== renderedKey) {
        const lastMsg = messages[messages.length - 1];
        const last = lastMsg ? `${lastMsg.stanzaId}:${lastMsg.msgId}:${lastMsg.time}` : '';
        const how =
          renderedFor !== r.jid ? 'bottom' : messages.length > renderedCount ? (last === renderedLast ? 'keep' : 'bottom') : 'auto';
        const items: HTMLElement[] = [];
        const older = olderItem(archive, messages.length > 0, () => actions.loadOlder(r.jid));
        if (older) items.push(older);
        messages.forEach((m, i) => {
          const prev = messages[i - 1];
          const sameSender = !!prev && prev.nick === m.nick && prev.mine === m.mine && !!prev.private === !!m.private && prev.history === m.history && m.time - prev.time < 5 * 60_000;
          items.push(messageItem(m, !sameSender));
          // Between the history the room sent on join and what was said since.
          const next = messages[i + 1];
          if (m.history && next && !next.history) items.push(h('li', { class: 'history-divider', role: 'separator' }, 'You joined'));
        });
        updateScrollList(list, items, how);
        renderedFor = r.jid;
        renderedKey = key;
        renderedCount = messages.length;
        renderedLast = last;
      }
    },
  };
}
