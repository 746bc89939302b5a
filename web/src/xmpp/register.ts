// XEP-0077 in-band registration of a new account over a short-lived RFC 7395 WebSocket stream.

const NS_FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';
const NS_REGISTER = 'jabber:iq:register';
const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';

export class RegistrationError extends Error {
  constructor(
    readonly condition: string,
    message: string,
  ) {
    super(message);
  }
}

function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}

/** Explains a registration error condition to a person. */
export function registrationErrorMessage(condition: string, text: string): string {
  switch (condition) {
    case 'conflict':
      return 'That username is already taken.';
    case 'not-acceptable':
    case 'bad-request':
      return text || 'The server did not accept that username or password.';
    case 'not-allowed':
    case 'forbidden':
    case 'service-unavailable':
    case 'feature-not-implemented':
      return 'This server does not allow creating accounts here.';
    case 'resource-constraint':
    case 'policy-violation':
      return text || 'Too many accounts were created recently; try again later.';
    default:
      return text || `Registration failed (${condition}).`;
  }
}

/**
 * Creates `username` with `password` on `domain` through the WebSocket endpoint `url`.
 * Resolves when the server confirms; rejects with a RegistrationError.
 */
export function register(url: string, domain: string, username: string, password: string, timeoutMs = 15000): Promise<void> {
  return new Promise((resolve, reject) => {
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, 'xmpp');
    } catch (e) {
      reject(new RegistrationError('network', `Could not reach the server: ${String(e)}`));
      return;
    }
    let done = false;
    let step: 'features' | 'form' | 'submit' = 'features';
    const timer = setTimeout(() => finish(new RegistrationError('timeout', 'The server did not answer in time.')), timeoutMs);
    const finish = (err?: RegistrationError) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        if (ws.readyState === WebSocket.OPEN) ws.send(`<close xmlns='${NS_FRAMING}'/>`);
        ws.close();
      } catch {
        /* closing anyway */
      }
      if (err) reject(err);
      else resolve();
    };
    const fail = (iq: Element) => {
      const error = Array.from(iq.children).find((c) => c.localName === 'error');
      const cond = error ? Array.from(error.children).find((c) => c.namespaceURI === NS_STANZAS && c.localName !== 'text') : undefined;
      const text = error ? Array.from(error.children).find((c) => c.localName === 'text')?.textContent ?? '' : '';
      const condition = cond?.localName ?? 'undefined-condition';
      finish(new RegistrationError(condition, registrationErrorMessage(condition, text)));
    };
    ws.onopen = () => ws.send(`<open xmlns='${NS_FRAMING}' to='${escapeXml(domain)}' version='1.0'/>`);
    ws.onerror = () => finish(new RegistrationError('network', 'Could not reach the server.'));
    ws.onclose = () => finish(new RegistrationError('network', 'The server closed the connection.'));
    ws.onmessage = (ev) => {
      const doc = new DOMParser().parseFromString(String(ev.data), 'text/xml');
      const el = doc.documentElement;
      if (!el || el.localName === 'parsererror') return;
      if (el.localName === 'close' || el.localName === 'error') {
        const cond = el.firstElementChild?.localName ?? 'closed';
        finish(new RegistrationError(cond, `The server ended the stream (${cond}).`));
        return;
      }
      if (el.localName === 'features' && step === 'features') {
        step = 'form';
        ws.send(`<iq xmlns='jabber:client' type='get' id='reg1' to='${escapeXml(domain)}'><query xmlns='${NS_REGISTER}'/></iq>`);
        return;
      }
      if (el.localName !== 'iq') return;
      if (el.getAttribute('type') === 'error') {
        fail(el);
        return;
      }
      if (step === 'form' && el.getAttribute('id') === 'reg1') {
        const query = Array.from(el.children).find((c) => c.localName === 'query');
        if (query && Array.from(query.children).some((c) => c.localName === 'registered')) {
          finish(new RegistrationError('conflict', registrationErrorMessage('conflict', '')));
          return;
        }
        step = 'submit';
        ws.send(
          `<iq xmlns='jabber:client' type='set' id='reg2' to='${escapeXml(domain)}'><query xmlns='${NS_REGISTER}'>` +
            `<username>${escapeXml(username)}</username><password>${escapeXml(password)}</password></query></iq>`,
        );
        return;
      }
      if (step === 'submit' && el.getAttribute('id') === 'reg2' && el.getAttribute('type') === 'result') finish();
    };
  });
}
