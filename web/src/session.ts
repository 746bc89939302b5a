// Remembered sign-in ("remember me"): kept in localStorage only when the person asked for it.
import type { ScramKeys, TransportChoice } from './xmpp/connection';

const KEY = 'rookery.session';

export interface RememberedSession {
  jid: string;
  domain: string;
  transport: TransportChoice;
  /** SCRAM keys when the server offered SCRAM (the password itself is not kept then). */
  keys?: ScramKeys;
  password?: string;
}

export function loadSession(storage: Storage = localStorage): RememberedSession | null {
  try {
    const raw = storage.getItem(KEY);
    if (!raw) return null;
    const s = JSON.parse(raw) as RememberedSession;
    if (typeof s.jid !== 'string' || !(s.keys || typeof s.password === 'string')) return null;
    return s;
  } catch {
    return null;
  }
}

export function saveSession(s: RememberedSession, storage: Storage = localStorage): void {
  storage.setItem(KEY, JSON.stringify(s));
}

export function forgetSession(storage: Storage = localStorage): void {
  storage.removeItem(KEY);
}
