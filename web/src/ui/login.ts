// Sign-in and account creation form (with "remember me" and an advanced server-domain field).
import { h } from './dom';
import type { TransportChoice } from '../xmpp/connection';

export interface LoginValues {
  mode: 'signin' | 'register';
  user: string;
  password: string;
  domain: string;
  transport: TransportChoice;
  remember: boolean;
}

export interface LoginView {
  root: HTMLElement;
  setBusy(busy: boolean, text?: string): void;
  showError(text: string): void;
  showInfo(text: string): void;
  focus(): void;
}

export function loginView(
  defaults: { user?: string; domain: string; transport: TransportChoice; registrationHint?: boolean },
  onSubmit: (v: LoginValues) => void,
): LoginView {
  let mode: LoginValues['mode'] = 'signin';
  const user = h('input', {
    id: 'login-user',
    name: 'username',
    autocomplete: 'username',
    required: true,
    autocapitalize: 'none',
    spellcheck: 'false',
    placeholder: 'alice or alice@example.org',
    value: defaults.user ?? '',
  });
  const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const domain = h('input', { id: 'login-domain', name: 'domain', autocomplete: 'off', spellcheck: 'false', value: defaults.domain });
  const transport = h(
    'select',
    { id: 'login-transport', name: 'transport' },
    h('option', { value: 'auto' }, 'Automatic (WebSocket, then BOSH)'),
    h('option', { value: 'websocket' }, 'WebSocket only'),
    h('option', { value: 'bosh' }, 'BOSH only'),
  );
  transport.value = defaults.transport;
  const remember = h('input', { id: 'login-remember', name: 'remember', type: 'checkbox' });
  const error = h('p', { id: 'login-error', class: 'form-error', role: 'alert', hidden: true });
  const info = h('p', { id: 'login-info', class: 'form-info', role: 'status', hidden: true });
  const submit = h('button', { id: 'login-submit', type: 'submit', class: 'primary' }, 'Sign in');
  const title = h('h1', { id: 'login-title' }, 'Sign in');
  const toggle = h('button', { id: 'login-toggle', type: 'button', class: 'link' }, 'Create an account');

  const form = h(
    'form',
    { id: 'login-form', class: 'card', novalidate: true, 'aria-labelledby': 'login-title' },
    h('div', { class: 'brand', 'aria-hidden': 'true' }, '🐦 Rookery'),
    title,
    h('label', { for: 'login-user' }, 'Username'),
    user,
    h('label', { for: 'login-password' }, 'Password'),
    password,
    h('div', { class: 'check' }, remember, h('label', { for: 'login-remember' }, 'Remember me on this device')),
    h(
      'details',
      { class: 'advanced' },
      h('summary', {}, 'Server settings'),
      h('label', { for: 'login-domain' }, 'Server domain'),
      domain,
      h('label', { for: 'login-transport' }, 'Connection'),
      transport,
    ),
    error,
    info,
    submit,
    h('p', { class: 'switch' }, toggle),
  );

  const setMode = (m: LoginValues['mode']) => {
    mode = m;
    title.textContent = m === 'signin' ? 'Sign in' : 'Create an account';
    submit.textContent = m === 'signin' ? 'Sign in' : 'Create account';
    toggle.textContent = m === 'signin' ? 'Create an account' : 'I already have an account';
    password.autocomplete = m === 'signin' ? 'current-password' : 'new-password';
    error.hidden = true;
  };
  toggle.addEventListener('click', () => setMode(mode === 'signin' ? 'register' : 'signin'));

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!user.value.trim()) return view.showError('Enter your username.'), user.focus();
    if (!password.value) return view.showError('Enter your password.'), password.focus();
    error.hidden = true;
    onSubmit({
      mode,
      user: user.value.trim(),
      password: password.value,
      domain: domain.value.trim() || defaults.domain,
      transport: transport.value as TransportChoice,
      remember: remember.checked,
    });
  });

  const root = h('main', { id: 'login', class: 'login-screen' }, form);
  const view: LoginView = {
    root,
    setBusy(busy, text) {
      submit.disabled = busy;
      toggle.disabled = busy;
      if (busy && text) view.showInfo(text);
      if (!busy) info.hidden = true;
    },
    showError(text) {
      info.hidden = true;
      error.textContent = text;
      error.hidden = false;
    },
    showInfo(text) {
      info.textContent = text;
      info.hidden = false;
    },
    focus() {
      (user.value ? password : user).focus();
    },
  };
  return view;
}
