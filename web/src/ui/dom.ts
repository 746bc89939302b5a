// Tiny DOM helpers: element creation with attributes/children, and focus keeping across list re-renders.

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | ((ev: Event) => void)>;

/** h('button', { class: 'x', onclick: f }, 'text') */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === 'function') {
      el.addEventListener(k.replace(/^on/, ''), v as EventListener);
    } else if (k === 'value' && 'value' in el) {
      (el as HTMLInputElement).value = String(v);
    } else if (k === 'checked' && 'checked' in el) {
      (el as HTMLInputElement).checked = !!v;
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c);
  }
  return el;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing`);
  return el as T;
}

/**
 * Replaces the children of `container`, keeping keyboard focus on the element with the same
 * `data-focus-key` if the focus was inside the container.
 */
export function replaceChildrenKeepFocus(container: HTMLElement, children: Node[]): void {
  const active = document.activeElement as HTMLElement | null;
  const key = active && container.contains(active) ? active.dataset.focusKey : undefined;
  container.replaceChildren(...children);
  if (key) {
    const again = container.querySelector<HTMLElement>(`[data-focus-key="${CSS.escape(key)}"]`);
    // Gone (e.g. "Load older messages" once everything is loaded): a focusable container keeps it.
    if (again) again.focus();
    else if (container.tabIndex >= 0) container.focus({ preventScroll: true });
  }
}

/**
 * Replaces the items of a scrolling message list. `bottom` scrolls to the newest, `keep` keeps the
 * reader's place when older items were added above, `auto` follows the bottom only if it was there.
 */
export function updateScrollList(list: HTMLElement, children: Node[], how: 'bottom' | 'keep' | 'auto'): void {
  const fromBottom = list.scrollHeight - list.scrollTop;
  const nearBottom = fromBottom - list.clientHeight < 80;
  replaceChildrenKeepFocus(list, children);
  if (how === 'bottom' || (how === 'auto' && nearBottom)) list.scrollTop = list.scrollHeight;
  else if (how === 'keep') list.scrollTop = list.scrollHeight - fromBottom;
}

/**
 * Calls `load` when the person scrolls (wheel, touch, keys) to the top of `list`, or tries to
 * scroll further up while there; scrolling done by the page itself does not count.
 */
export function onScrollToTop(list: HTMLElement, load: () => void): void {
  let lastInput = -Infinity;
  const mark = () => (lastInput = performance.now());
  list.addEventListener('touchmove', mark, { passive: true });
  list.addEventListener('keydown', (e) => {
    if (['ArrowUp', 'PageUp', 'Home'].includes(e.key)) {
      mark();
      if (list.scrollTop === 0) load();
    }
  });
  list.addEventListener(
    'wheel',
    (e) => {
      mark();
      if (e.deltaY < 0 && list.scrollTop === 0) load();
    },
    { passive: true },
  );
  list.addEventListener('scroll', () => {
    if (list.scrollTop < 40 && performance.now() - lastInput < 1000) load();
  });
}
