// Shared files in the message lists (a link, or the image itself) and the composers' "attach a file" button (XEP-0363 uploads).
import { h } from './dom';
import { describeFile } from '../xmpp/upload';

/** A paperclip, drawn rather than an emoji (which not every system has a font for). */
function clipIcon(): SVGSVGElement {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', '1.1em');
  svg.setAttribute('height', '1.1em');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'clip-icon');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', 'M8 7v8a4 4 0 0 0 8 0V5a2.5 2.5 0 0 0-5 0v10a1 1 0 0 0 2 0V8');
  path.setAttribute('transform', 'rotate(40 12 12)');
  path.setAttribute('fill', 'none');
  path.setAttribute('stroke', 'currentColor');
  path.setAttribute('stroke-width', '1.8');
  path.setAttribute('stroke-linecap', 'round');
  svg.append(path);
  return svg;
}

/** A message's body: its text, or for a shared file a link to it, with images shown inline. */
export function messageBody(body: string, file?: boolean): HTMLElement {
  if (!file) return h('p', { class: 'body' }, body);
  const { name, image } = describeFile(body);
  const link = h(
    'a',
    { class: image ? 'attachment attachment-image' : 'attachment attachment-file', href: body, target: '_blank', rel: 'noopener noreferrer' },
    image ? h('img', { src: body, alt: name, loading: 'lazy', decoding: 'async' }) : h('span', { class: 'attachment-name' }, clipIcon(), h('span', {}, name)),
  );
  return h('div', { class: 'body' }, link);
}

export interface AttachControl {
  /** The button and its hidden file input, for the composer form. */
  elements: HTMLElement[];
  setEnabled(on: boolean): void;
}

/**
 * A button that opens the file picker (Enter or Space like any button) and hands the chosen file
 * to `upload`; it says "Uploading…" until that settles.
 */
export function attachControl(id: string, upload: (file: File) => Promise<void>): AttachControl {
  const input = h('input', { type: 'file', id: `${id}-input`, hidden: true, tabindex: -1, 'aria-hidden': 'true' });
  const button = h('button', { type: 'button', id, class: 'ghost attach', 'aria-label': 'Attach a file', title: 'Attach a file' }, clipIcon());
  const status = h('span', { class: 'upload-status', role: 'status', 'aria-live': 'polite' });
  let busy = false;
  let enabled = true;
  const sync = () => {
    button.disabled = busy || !enabled;
    button.setAttribute('aria-busy', busy ? 'true' : 'false');
  };
  button.addEventListener('click', () => input.click());
  input.addEventListener('change', () => {
    const file = input.files?.[0];
    input.value = '';
    if (!file) return;
    busy = true;
    status.textContent = `Uploading ${file.name}…`;
    sync();
    upload(file)
      .catch(() => undefined) // the app reports failures
      .finally(() => {
        busy = false;
        status.textContent = '';
        sync();
        button.focus();
      });
  });
  return {
    elements: [button, input, status],
    setEnabled(on) {
      enabled = on;
      sync();
    },
  };
}
