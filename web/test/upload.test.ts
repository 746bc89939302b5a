// Unit tests for file sharing: upload service discovery, slots (XEP-0363), shared-file messages (XEP-0066), and the reducers keeping the mark.
import { describe, expect, it } from 'vitest';
import { NS_OOB, NS_UPLOAD, describeFile, formatSize, isSharedFile, parseSlot, parseUploadService } from '../src/xmpp/upload';
import type { XmlEl } from '../src/xmpp/muc';
import { parseGroupchat } from '../src/xmpp/muc';
import { chatReducer, emptyChats } from '../src/state/chat';

interface Node extends XmlEl {
  children: Node[];
}

/** e('x', { xmlns: NS }, ...children): children without xmlns take their parent's namespace. */
function e(name: string, attrs: Record<string, string> = {}, ...kids: (Node | string)[]): Node {
  const { xmlns, ...rest } = attrs;
  const children = kids.filter((k): k is Node => typeof k !== 'string');
  const node: Node = {
    localName: name,
    namespaceURI: xmlns ?? null,
    getAttribute: (n) => rest[n] ?? null,
    children,
    textContent: kids.map((k) => (typeof k === 'string' ? k : k.textContent)).join(''),
  };
  for (const c of children) if (c.namespaceURI === null) (c as { namespaceURI: string | null }).namespaceURI = node.namespaceURI;
  return node;
}

const INFO = 'http://jabber.org/protocol/disco#info';
const URL_ = 'https://upload.example.org/upload/abc/tr%C3%A8s%20cool.JPG';

describe('parseUploadService', () => {
  const info = (...extra: Node[]) =>
    e(
      'iq',
      { type: 'result', xmlns: 'jabber:client' },
      e(
        'query',
        { xmlns: INFO },
        e('identity', { category: 'store', type: 'file', name: 'HTTP File Upload' }),
        e('feature', { var: NS_UPLOAD }),
        ...extra,
      ),
    );

  it('reads the size limit from the XEP-0128 form', () => {
    const form = e(
      'x',
      { xmlns: 'jabber:x:data', type: 'result' },
      e('field', { var: 'FORM_TYPE', type: 'hidden' }, e('value', {}, NS_UPLOAD)),
      e('field', { var: 'max-file-size' }, e('value', {}, '5242880')),
    );
    expect(parseUploadService('upload.x', info(form))).toEqual({ jid: 'upload.x', maxSize: 5242880 });
    expect(parseUploadService('upload.x', info())).toEqual({ jid: 'upload.x', maxSize: null });
  });

  it('ignores services that are not upload services', () => {
    const muc = e('iq', {}, e('query', { xmlns: INFO }, e('identity', { category: 'conference', type: 'text' }), e('feature', { var: 'http://jabber.org/protocol/muc' })));
    expect(parseUploadService('conference.x', muc)).toBeNull();
  });
});

describe('parseSlot', () => {
  it('keeps only the headers XEP-0363 allows, without newlines', () => {
    const iq = e(
      'iq',
      { type: 'result' },
      e(
        'slot',
        { xmlns: NS_UPLOAD },
        e('get', { url: URL_ }),
        e('put', { url: URL_ }, e('header', { name: 'Authorization' }, 'Bearer a.b\n'), e('header', { name: 'X-Evil' }, 'no')),
      ),
    );
    expect(parseSlot(iq)).toEqual({ put: URL_, get: URL_, headers: { Authorization: 'Bearer a.b' } });
  });

  it('throws on a result without a slot', () => {
    expect(() => parseSlot(e('iq', { type: 'result' }))).toThrow();
  });
});

describe('shared files', () => {
  const message = (body: string, url: string) =>
    e('message', { xmlns: 'jabber:client', from: 'room@conference.x/bob', type: 'groupchat', id: 'm1' }, e('body', {}, body), e('x', { xmlns: NS_OOB }, e('url', {}, url)));

  it('a message is a shared file when its body is its out-of-band URL', () => {
    expect(isSharedFile(message(URL_, URL_))).toBe(true);
    expect(isSharedFile(message(`look: ${URL_}`, URL_))).toBe(false);
    expect(isSharedFile(message('javascript:alert(1)', 'javascript:alert(1)'))).toBe(false);
    const plain = e('message', {}, e('body', {}, URL_));
    expect(isSharedFile(plain)).toBe(false);
  });

  it('room messages carry the mark', () => {
    const g = parseGroupchat(message(URL_, URL_), 1000);
    expect(g).toMatchObject({ kind: 'message', message: { body: URL_, file: true } });
  });

  it('names the file and recognises images', () => {
    expect(describeFile(URL_)).toEqual({ name: 'très cool.JPG', image: true });
    expect(describeFile('https://x/upload/id/report.pdf')).toEqual({ name: 'report.pdf', image: false });
    expect(formatSize(100 * 1024 * 1024)).toBe('100 MB');
    expect(formatSize(1536)).toBe('1.5 KB');
  });

  it('the chat reducer keeps the mark on incoming, outgoing and archived messages', () => {
    let s = chatReducer(emptyChats, { type: 'incoming', jid: 'b@x', id: '1', body: URL_, time: 1, seen: false, file: true });
    s = chatReducer(s, { type: 'outgoing', jid: 'b@x', id: '2', body: URL_, time: 10_000, file: true });
    const items = [
      { id: '3', dir: 'in' as const, body: URL_, time: 20_000, file: true },
      { id: '4', dir: 'in' as const, body: 'hi', time: 30_000 },
    ];
    s = chatReducer(s, { type: 'history', jid: 'b@x', items });
    expect(s.conversations['b@x'].messages.map((m) => m.file ?? false)).toEqual([true, true, true, false]);
  });
});
