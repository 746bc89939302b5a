// Entry point: chooses between the sign-in form and the app, restores a remembered session, creates accounts.
import './style.css';
import { completeJid, domainForHost } from './jid';
import { loginView, type LoginValues } from './ui/login';
import { appView, type AppView } from './ui/app';
import { defaultEndpoints, SignInError, XmppClient, type Credentials, type TransportChoice } from './xmpp/connection';
import { register, RegistrationError } from './xmpp/register';
import { forgetSession, loadSession, saveSession } from './session';

const root = document.getElementById('root')!;
const params = new URLSearchParams(location.search);
const endpoints = defaultEndpoints(location);
const defaultDomain = params.get('domain') ?? domainForHost(location.hostname);
const forcedTransport = params.get('transport') as TransportChoice | null;

let current: AppView | null = null;

function signInMessage(e: unknown): string {
  if (e instanceof SignInError) {
    if (e.kind === 'auth') return 'Wrong username or password.';
    if (e.kind === 'conflict') return 'This session is already signed in elsewhere.';
    return `Could not connect to the server (${e.message}). Check your connection and the server domain.`;
  }
  return String(e);
}

function showLogin(opts: { error?: string; info?: string; user?: string; transport?: TransportChoice } = {}) {
  current?.destroy();
  current = null;
  const view = loginView(
    { user: opts.user, domain: defaultDomain, transport: opts.transport ?? forcedTransport ?? 'auto' },
    (v) => void submit(v),
  );
  root.replaceChildren(view.root);
  if (opts.error) view.showError(opts.error);
  else if (opts.info) view.showInfo(opts.info);
  view.focus();

  async function submit(v: LoginValues) {
    const jid = completeJid(v.user, v.domain);
    if (!jid) return view.showError('That is not a valid username or address.');
    if (v.mode === 'register') {
      view.setBusy(true, 'Creating your account…');
      try {
        await register(endpoints.websocket, jid.split('@')[1], jid.split('@')[0], v.password);
      } catch (e) {
        view.setBusy(false);
        return view.showError(e instanceof RegistrationError ? e.message : String(e));
      }
    }
    view.setBusy(true, 'Signing in…');
    try {
      const client = await start({ jid, password: v.password }, v.transport);
      if (v.remember) {
        const keys = client.scramKeys;
        saveSession({ jid, domain: v.domain, transport: v.transport, ...(keys ? { keys } : { password: v.password }) });
      } else {
        forgetSession();
      }
    } catch (e) {
      view.setBusy(false);
      view.showError(signInMessage(e));
    }
  }
}

async function start(creds: Credentials, transport: TransportChoice): Promise<XmppClient> {
  const client = new XmppClient({ endpoints, transport, debug: params.has('debug') });
  await client.signIn(creds);
  current?.destroy();
  current = appView(client, {
    onSignedOut(reason, authFailed) {
      if (authFailed) {
        forgetSession();
        showLogin({ error: 'You were signed out: wrong username or password.', user: creds.jid });
      } else {
        forgetSession();
        showLogin({ info: reason === 'Signed out' ? 'You have signed out.' : reason, user: creds.jid });
      }
    },
  });
  root.replaceChildren(current.root);
  return client;
}

async function boot() {
  const saved = loadSession();
  if (!saved) return showLogin();
  root.replaceChildren(Object.assign(document.createElement('p'), { className: 'boot', textContent: `Signing in as ${saved.jid}…` }));
  try {
    await start({ jid: saved.jid, password: saved.keys ?? saved.password ?? '' }, forcedTransport ?? saved.transport);
  } catch (e) {
    if (e instanceof SignInError && e.kind === 'auth') forgetSession();
    showLogin({ error: signInMessage(e), user: saved.jid });
  }
}

void boot();
