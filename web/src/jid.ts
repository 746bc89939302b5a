// JID parsing and helpers (RFC 7622 subset: local@domain/resource), pure functions.

export interface Jid {
  local: string;
  domain: string;
  resource: string;
}

/** Splits a JID string into its parts; returns null when it is not a usable JID. */
export function parseJid(input: string): Jid | null {
  const s = input.trim();
  if (!s) return null;
  const slash = s.indexOf('/');
  const beforeResource = slash >= 0 ? s.slice(0, slash) : s;
  const resource = slash >= 0 ? s.slice(slash + 1) : '';
  const at = beforeResource.lastIndexOf('@');
  const local = at >= 0 ? beforeResource.slice(0, at) : '';
  const domain = (at >= 0 ? beforeResource.slice(at + 1) : beforeResource).toLowerCase();
  if (!domain || /[\s@/]/.test(domain)) return null;
  if (at >= 0 && (!local || /[\s"&'/:<>@]/.test(local))) return null;
  if (slash >= 0 && !resource) return null;
  if (local.length > 1023 || domain.length > 1023 || resource.length > 1023) return null;
  return { local: local.toLowerCase(), domain, resource };
}

export function formatJid(j: Jid): string {
  return (j.local ? `${j.local}@` : '') + j.domain + (j.resource ? `/${j.resource}` : '');
}

/** The bare JID (local@domain) of a JID string; the input unchanged if it does not parse. */
export function bareJid(jid: string): string {
  const j = parseJid(jid);
  return j ? formatJid({ ...j, resource: '' }) : jid;
}

export function resourceOf(jid: string): string {
  return parseJid(jid)?.resource ?? '';
}

/** The local part, or the domain for a domain-only JID: a short display name. */
export function localName(jid: string): string {
  const j = parseJid(jid);
  if (!j) return jid;
  return j.local || j.domain;
}

/**
 * Turns what a person typed in the sign-in or add-contact field into a bare JID:
 * "alice" becomes "alice@<domain>", "alice@example.org" stays. Null if unusable.
 */
export function completeJid(typed: string, defaultDomain: string): string | null {
  const t = typed.trim();
  if (!t) return null;
  const j = parseJid(t.includes('@') ? t : `${t}@${defaultDomain}`);
  if (!j || !j.local) return null;
  return formatJid({ ...j, resource: '' });
}

/** The XMPP domain to use when served from `hostname`: "localhost" for loopback addresses. */
export function domainForHost(hostname: string): string {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === '' || h === 'localhost' || h === '::1' || /^127\./.test(h)) return 'localhost';
  return h;
}
