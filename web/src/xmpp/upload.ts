// File sharing: HTTP upload slots (XEP-0363) and the out-of-band URL that marks a message as a shared file (XEP-0066).
import type { XmlEl } from './muc';

export const NS_UPLOAD = 'urn:xmpp:http:upload:0';
export const NS_OOB = 'jabber:x:oob';
const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
const NS_DATA = 'jabber:x:data';

export interface UploadService {
  jid: string;
  /** The largest file accepted, in bytes, when the service says (XEP-0128 form). */
  maxSize: number | null;
}

export interface Slot {
  put: string;
  get: string;
  /** Headers the PUT must carry (only those XEP-0363 §4 allows). */
  headers: Record<string, string>;
}

const kids = (el: XmlEl): XmlEl[] => Array.from(el.children);

/** The upload service described by a disco#info result of `jid`, or null when it is not one. */
export function parseUploadService(jid: string, info: XmlEl): UploadService | null {
  const query = kids(info).find((c) => c.localName === 'query' && c.namespaceURI === NS_DISCO_INFO);
  if (!query) return null;
  const isStore = kids(query).some((c) => c.localName === 'identity' && c.getAttribute('category') === 'store' && c.getAttribute('type') === 'file');
  const speaks = kids(query).some((c) => c.localName === 'feature' && c.getAttribute('var') === NS_UPLOAD);
  if (!isStore || !speaks) return null;
  let maxSize: number | null = null;
  for (const x of kids(query).filter((c) => c.localName === 'x' && c.namespaceURI === NS_DATA)) {
    const fields = kids(x).filter((f) => f.localName === 'field');
    const value = (name: string) => {
      const field = fields.find((f) => f.getAttribute('var') === name);
      return field ? (kids(field).find((v) => v.localName === 'value')?.textContent ?? null) : null;
    };
    if (value('FORM_TYPE') !== NS_UPLOAD) continue;
    const n = Number(value('max-file-size'));
    if (Number.isFinite(n) && n > 0) maxSize = n;
  }
  return { jid, maxSize };
}

const ALLOWED_HEADERS = ['authorization', 'cookie', 'expires'];

/** The slot in an IQ result; throws when the result holds none. */
export function parseSlot(iq: XmlEl): Slot {
  const slot = kids(iq).find((c) => c.localName === 'slot' && c.namespaceURI === NS_UPLOAD);
  const put = slot && kids(slot).find((c) => c.localName === 'put');
  const get = slot && kids(slot).find((c) => c.localName === 'get');
  const putUrl = put?.getAttribute('url');
  const getUrl = get?.getAttribute('url');
  if (!put || !putUrl || !getUrl) throw new Error('The upload service sent no usable slot');
  const headers: Record<string, string> = {};
  for (const hd of kids(put).filter((c) => c.localName === 'header')) {
    const name = (hd.getAttribute('name') ?? '').replace(/[\r\n]/g, '');
    if (!ALLOWED_HEADERS.includes(name.toLowerCase())) continue;
    headers[name] = (hd.textContent ?? '').replace(/[\r\n]/g, '');
  }
  return { put: putUrl, get: getUrl, headers };
}

/** Whether a message is a shared file: its body is the URL its XEP-0066 <x><url/> names. */
export function isSharedFile(m: XmlEl): boolean {
  const body = kids(m).find((c) => c.localName === 'body');
  const x = kids(m).find((c) => c.localName === 'x' && c.namespaceURI === NS_OOB);
  const url = x && kids(x).find((c) => c.localName === 'url');
  const text = url?.textContent?.trim();
  return !!text && text === body?.textContent?.trim() && /^https?:\/\//i.test(text);
}

const IMAGE = /\.(png|jpe?g|gif|webp|avif|bmp)$/i;

/** What to show for a shared file's URL: its name, and whether it is an image to show inline. */
export function describeFile(url: string): { name: string; image: boolean } {
  let path = url;
  try {
    path = new URL(url).pathname;
  } catch {
    /* not a URL: use it as it is */
  }
  const last = path.split('/').filter(Boolean).pop() ?? url;
  let name = last;
  try {
    name = decodeURIComponent(last);
  } catch {
    /* keep it encoded */
  }
  return { name, image: IMAGE.test(path) };
}

/** "1.5 MB" */
export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let n = bytes / 1024;
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n < 10 ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}
