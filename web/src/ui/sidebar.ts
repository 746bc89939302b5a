// Sidebar: own presence and sign-out, incoming subscription requests and room invitations, add-contact form, contact list with presence and unread counts, group chats with the join form.
import { h, replaceChildrenKeepFocus } from './dom';
import type { AppState } from '../store';
import { bestPresence, displayName, SHOW_LABELS, sortedContacts, type Show } from '../state/roster';
import { roomName, type Invite, type Room } from '../state/rooms';

export interface SidebarActions {
  setPresence(show: Exclude<Show, 'offline'>, status: string): void;
  signOut(): void;
  openChat(jid: string): void;
  addContact(input: string): void;
  accept(jid: string): void;
  deny(jid: string): void;
  remove(jid: string): void;
  /** `room`: a room name or a full room JID. */
  joinRoom(room: string, nick: string): void;
  openRoom(jid: string): void;
  leaveRoom(jid: string): void;
  acceptInvite(invite: Invite): void;
  dismissInvite(room: string): void;
}

/** One line about a room for the list: why we are not in, its subject, or who is there. */
export function roomStatusText(r: Room): string {
  switch (r.status) {
    case 'joining':
      return 'Joining…';
    case 'offline':
      return 'Offline: will rejoin';
    case 'password':
      return 'Password needed';
    case 'error':
      return r.error ?? 'Not joined';
    case 'joined': {
      const n = Object.keys(r.occupants).length;
      return r.subject || `${n} ${n === 1 ? 'person' : 'people'}`;
    }
  }
}

export interface SidebarView {
  root: HTMLElement;
  render(s: AppState): void;
}

export function presenceDot(show: Show, label: string): HTMLElement {
  return h('span', { class: 'presence', 'data-show': show, role: 'img', 'aria-label': label, title: label });
}

export function sidebarView(actions: SidebarActions): SidebarView {
  const me = h('div', { id: 'me-jid', class: 'me-jid' });
  const showSel = h(
    'select',
    { id: 'my-show', 'aria-label': 'My availability' },
    ...(['online', 'chat', 'away', 'xa', 'dnd'] as const).map((s) => h('option', { value: s }, SHOW_LABELS[s])),
  );
  const statusInput = h('input', { id: 'my-status', placeholder: 'Status message', 'aria-label': 'My status message', maxlength: 200 });
  const statusForm = h('form', { id: 'my-presence', class: 'my-presence' }, showSel, statusInput, h('button', { type: 'submit', class: 'small' }, 'Set'));
  const submitPresence = () => actions.setPresence(showSel.value as Exclude<Show, 'offline'>, statusInput.value.trim());
  showSel.addEventListener('change', submitPresence);
  statusForm.addEventListener('submit', (e) => {
    e.preventDefault();
    submitPresence();
  });
  const signOut = h('button', { id: 'sign-out', type: 'button', class: 'small ghost', onclick: () => actions.signOut() }, 'Sign out');

  const requests = h('section', { id: 'requests', class: 'requests', 'aria-label': 'Contact requests', hidden: true });

  const addInput = h('input', { id: 'add-contact-jid', placeholder: 'Add contact: bob@example.org', 'aria-label': 'Address of the contact to add', autocapitalize: 'none', spellcheck: 'false' });
  const addForm = h('form', { id: 'add-contact', class: 'add-contact' }, addInput, h('button', { type: 'submit', class: 'small' }, 'Add'));
  addForm.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!addInput.value.trim()) return addInput.focus();
    actions.addContact(addInput.value);
    addInput.value = '';
  });

  const invites = h('section', { id: 'invites', class: 'requests', 'aria-label': 'Group chat invitations', hidden: true });

  const roomInput = h('input', {
    id: 'join-room-jid',
    placeholder: 'lounge or lounge@conference.example.org',
    autocapitalize: 'none',
    spellcheck: 'false',
    autocomplete: 'off',
  });
  const nickInput = h('input', { id: 'join-room-nick', autocapitalize: 'none', spellcheck: 'false', autocomplete: 'nickname', maxlength: 100 });
  const joinForm = h(
    'form',
    { id: 'join-room', class: 'join-room', 'aria-label': 'Join a group chat', hidden: true },
    h('label', { for: 'join-room-jid' }, 'Room'),
    roomInput,
    h('label', { for: 'join-room-nick' }, 'Nickname'),
    nickInput,
    h(
      'div',
      { class: 'form-buttons' },
      h('button', { type: 'submit', class: 'small primary', id: 'join-room-submit' }, 'Join'),
      h('button', { type: 'button', class: 'small ghost', id: 'join-room-cancel', onclick: () => closeJoin() }, 'Cancel'),
    ),
  );
  const joinToggle = h(
    'button',
    { type: 'button', id: 'join-room-open', class: 'small', 'aria-expanded': 'false', 'aria-controls': 'join-room', onclick: () => (joinForm.hidden ? openJoin() : closeJoin()) },
    'Join group chat',
  );
  let myLocal = '';
  const openJoin = () => {
    joinForm.hidden = false;
    joinToggle.setAttribute('aria-expanded', 'true');
    if (!nickInput.value) nickInput.value = myLocal;
    roomInput.focus();
  };
  const closeJoin = () => {
    joinForm.hidden = true;
    joinToggle.setAttribute('aria-expanded', 'false');
    roomInput.value = '';
    joinToggle.focus();
  };
  joinForm.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') closeJoin();
  });
  joinForm.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!roomInput.value.trim()) return roomInput.focus();
    if (!nickInput.value.trim()) return nickInput.focus();
    actions.joinRoom(roomInput.value.trim(), nickInput.value.trim());
    joinForm.hidden = true;
    joinToggle.setAttribute('aria-expanded', 'false');
    roomInput.value = '';
  });
  const roomList = h('ul', { id: 'rooms', class: 'contacts rooms', 'aria-label': 'Group chats' });
  const roomsEmpty = h('p', { class: 'empty-hint', id: 'rooms-empty' }, 'No group chats yet.');

  const notice = h('p', { id: 'sidebar-notice', class: 'notice', role: 'status', hidden: true });
  const list = h('ul', { id: 'contacts', class: 'contacts', 'aria-label': 'Contacts' });
  const empty = h('p', { class: 'empty-hint', id: 'contacts-empty' }, 'No contacts yet. Add one above by their address.');

  const root = h(
    'aside',
    { id: 'sidebar', class: 'sidebar', 'aria-label': 'Contacts, group chats and status' },
    h('header', { class: 'me' }, h('div', { class: 'me-row' }, me, signOut), statusForm),
    requests,
    invites,
    addForm,
    notice,
    h('div', { class: 'section-row' }, h('h2', { class: 'section-title' }, 'Group chats'), joinToggle),
    joinForm,
    roomList,
    roomsEmpty,
    h('h2', { class: 'section-title' }, 'Contacts'),
    list,
    empty,
  );

  let lastMe = '';
  return {
    root,
    render(s) {
      me.textContent = s.me.jid;
      myLocal = s.me.jid.split('@')[0] ?? '';
      const meKey = `${s.me.show}|${s.me.status}`;
      if (meKey !== lastMe && document.activeElement !== statusInput) {
        showSel.value = s.me.show;
        statusInput.value = s.me.status;
        lastMe = meKey;
      }
      notice.hidden = !s.notice;
      notice.textContent = s.notice?.text ?? '';
      notice.classList.toggle('error', !!s.notice?.error);

      requests.hidden = s.roster.requests.length === 0;
      replaceChildrenKeepFocus(
        requests,
        s.roster.requests.length
          ? [
              h('h2', { class: 'section-title' }, 'Contact requests'),
              ...s.roster.requests.map((jid) =>
                h(
                  'div',
                  { class: 'request', 'data-jid': jid },
                  h('span', { class: 'request-text' }, h('strong', {}, jid), ' wants to add you'),
                  h('button', { type: 'button', class: 'small primary accept', 'data-focus-key': `accept:${jid}`, onclick: () => actions.accept(jid) }, 'Accept'),
                  h('button', { type: 'button', class: 'small ghost deny', 'data-focus-key': `deny:${jid}`, onclick: () => actions.deny(jid) }, 'Deny'),
                ),
              ),
            ]
          : [],
      );

      invites.hidden = s.rooms.invites.length === 0;
      replaceChildrenKeepFocus(
        invites,
        s.rooms.invites.length
          ? [
              h('h2', { class: 'section-title' }, 'Invitations'),
              ...s.rooms.invites.map((inv) =>
                h(
                  'div',
                  { class: 'request invite', 'data-room': inv.room },
                  h(
                    'span',
                    { class: 'request-text' },
                    h('strong', {}, inv.from),
                    ' invites you to ',
                    h('strong', {}, inv.room),
                    inv.reason ? h('span', { class: 'invite-reason' }, ` — “${inv.reason}”`) : null,
                  ),
                  h('button', { type: 'button', class: 'small primary accept', 'data-focus-key': `invite-join:${inv.room}`, onclick: () => actions.acceptInvite(inv) }, 'Join'),
                  h('button', { type: 'button', class: 'small ghost deny', 'data-focus-key': `invite-dismiss:${inv.room}`, onclick: () => actions.dismissInvite(inv.room) }, 'Dismiss'),
                ),
              ),
            ]
          : [],
      );

      const rooms = Object.values(s.rooms.rooms).sort((a, b) => a.jid.localeCompare(b.jid));
      roomsEmpty.hidden = rooms.length > 0;
      replaceChildrenKeepFocus(
        roomList,
        rooms.map((r) => {
          const name = roomName(r.jid);
          const statusText = roomStatusText(r);
          return h(
            'li',
            { class: 'contact room', 'data-jid': r.jid, 'data-status': r.status, 'aria-current': s.rooms.active === r.jid ? 'true' : null },
            h(
              'button',
              {
                type: 'button',
                class: 'contact-open',
                'data-focus-key': `room:${r.jid}`,
                'aria-label': `Group chat ${name}, ${statusText}${r.unread ? `, ${r.unread} unread` : ''}`,
                title: r.jid,
                onclick: () => actions.openRoom(r.jid),
              },
              h('span', { class: 'room-icon', 'data-status': r.status, 'aria-hidden': 'true' }, '#'),
              h('span', { class: 'contact-text' }, h('span', { class: 'contact-name' }, name), h('span', { class: 'contact-status' }, statusText)),
              r.unread ? h('span', { class: 'unread', 'aria-hidden': 'true' }, String(r.unread)) : null,
            ),
            h(
              'button',
              {
                type: 'button',
                class: 'contact-remove ghost',
                'data-focus-key': `leave:${r.jid}`,
                'aria-label': `Leave ${name}`,
                title: `Leave ${name}`,
                onclick: () => actions.leaveRoom(r.jid),
              },
              '✕',
            ),
          );
        }),
      );

      const contacts = sortedContacts(s.roster);
      empty.hidden = contacts.length > 0;
      replaceChildrenKeepFocus(
        list,
        contacts.map((c) => {
          const p = bestPresence(c);
          const conv = s.chats.conversations[c.jid];
          const unread = conv?.unread ?? 0;
          const typing = conv?.theirState === 'composing';
          const pending = c.ask && (c.subscription === 'none' || c.subscription === 'from');
          const statusText = typing ? 'typing…' : p.status || (pending ? 'Awaiting approval' : SHOW_LABELS[p.show]);
          const name = displayName(c);
          return h(
            'li',
            { class: 'contact', 'data-jid': c.jid, 'data-show': p.show, 'aria-current': s.chats.active === c.jid ? 'true' : null },
            h(
              'button',
              {
                type: 'button',
                class: 'contact-open',
                'data-focus-key': `open:${c.jid}`,
                'aria-label': `${name}, ${SHOW_LABELS[p.show]}${p.status ? `, ${p.status}` : ''}${unread ? `, ${unread} unread` : ''}`,
                onclick: () => actions.openChat(c.jid),
              },
              presenceDot(p.show, SHOW_LABELS[p.show]),
              h('span', { class: 'contact-text' }, h('span', { class: 'contact-name' }, name), h('span', { class: 'contact-status' }, statusText)),
              unread ? h('span', { class: 'unread', 'aria-hidden': 'true' }, String(unread)) : null,
            ),
            h(
              'button',
              {
                type: 'button',
                class: 'contact-remove ghost',
                'data-focus-key': `remove:${c.jid}`,
                'aria-label': `Remove ${name}`,
                title: `Remove ${name}`,
                onclick: () => actions.remove(c.jid),
              },
              '✕',
            ),
          );
        }),
      );
    },
  };
}
