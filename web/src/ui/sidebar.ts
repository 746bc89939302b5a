// Sidebar: own presence and sign-out, incoming subscription requests, add-contact form, contact list with presence and unread counts.
import { h, replaceChildrenKeepFocus } from './dom';
import type { AppState } from '../store';
import { bestPresence, displayName, SHOW_LABELS, sortedContacts, type Show } from '../state/roster';

export interface SidebarActions {
  setPresence(show: Exclude<Show, 'offline'>, status: string): void;
  signOut(): void;
  openChat(jid: string): void;
  addContact(input: string): void;
  accept(jid: string): void;
  deny(jid: string): void;
  remove(jid: string): void;
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

  const notice = h('p', { id: 'sidebar-notice', class: 'notice', role: 'status', hidden: true });
  const list = h('ul', { id: 'contacts', class: 'contacts', 'aria-label': 'Contacts' });
  const empty = h('p', { class: 'empty-hint', id: 'contacts-empty' }, 'No contacts yet. Add one above by their address.');

  // Sections to come (group chat rooms) slot in after the contacts section.
  const root = h(
    'aside',
    { id: 'sidebar', class: 'sidebar', 'aria-label': 'Contacts and status' },
    h('header', { class: 'me' }, h('div', { class: 'me-row' }, me, signOut), statusForm),
    requests,
    addForm,
    notice,
    h('h2', { class: 'section-title' }, 'Contacts'),
    list,
    empty,
  );

  let lastMe = '';
  return {
    root,
    render(s) {
      me.textContent = s.me.jid;
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
