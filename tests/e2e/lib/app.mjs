// Page helpers for the Rookery web app: sign in, register, contacts, conversations (waiting on selectors only).
import assert from 'node:assert/strict';

export async function signIn(page, server, { user, password, remember = false, query = '' }) {
  await page.goto(`${server.url}/${query}`);
  await page.locator('#login-user').fill(user);
  await page.locator('#login-password').fill(password);
  if (remember) await page.locator('#login-remember').check();
  await page.locator('#login-submit').click();
}

export async function signedIn(page, jid) {
  await page.locator('#me-jid').filter({ hasText: jid }).waitFor();
}

export const contact = (page, jid) => page.locator(`li.contact[data-jid="${jid}"]`);

export async function addContact(page, jid) {
  await page.locator('#add-contact-jid').fill(jid);
  await page.locator('#add-contact-jid').press('Enter');
  await contact(page, jid).waitFor();
}

export async function waitOnline(page, jid) {
  await page.locator(`li.contact[data-jid="${jid}"][data-show="online"]`).waitFor();
}

export async function openChat(page, jid) {
  await contact(page, jid).locator('.contact-open').click();
  await page.locator('#chat-subtitle').filter({ hasText: jid }).waitFor();
}

export async function send(page, text) {
  await page.locator('#composer').fill(text);
  await page.locator('#composer').press('Enter');
  return page.locator('#messages li.message[data-dir="out"]').filter({ hasText: text }).last();
}

export async function expectIncoming(page, text) {
  const m = page.locator('#messages li.message[data-dir="in"]').filter({ hasText: text });
  await m.waitFor();
  assert.equal(await m.count(), 1);
  return m;
}
