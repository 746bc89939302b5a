// Page helpers for the Rookery web app: sign in, register, contacts, conversations, group chats (waiting on selectors only).
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

// --- group chats -------------------------------------------------------------

export const roomItem = (page, jid) => page.locator(`li.room[data-jid="${jid}"]`);
export const occupant = (page, nick) => page.locator(`#occupants li.occupant[data-nick="${nick}"]`);
export const roomMessage = (page, text) => page.locator('#room-messages li.message').filter({ hasText: text });

/** Joins with the sidebar form: `room` is a name or a room JID; the nickname defaults to the local part. */
export async function joinRoom(page, room, { nick } = {}) {
  await page.locator('#join-room-open').click();
  await page.locator('#join-room-jid').fill(room);
  if (nick !== undefined) await page.locator('#join-room-nick').fill(nick);
  await page.locator('#join-room-jid').press('Enter');
}

/** Waits until the open room is `jid` and the room accepted us. */
export async function roomJoined(page, jid) {
  await page.locator('#room[data-status="joined"]').waitFor();
  await page.locator('#room-subtitle').filter({ hasText: jid }).waitFor();
  await roomItem(page, jid).and(page.locator('[data-status="joined"]')).waitFor({ state: 'attached' });
}

export async function openRoom(page, jid) {
  await roomItem(page, jid).locator('.contact-open').click();
  await page.locator('#room-subtitle').filter({ hasText: jid }).waitFor();
}

export async function sendToRoom(page, text) {
  await page.locator('#room-composer').fill(text);
  await page.locator('#room-composer').press('Enter');
  // Sent once the room reflects it back (it is no longer pending).
  const m = page.locator('#room-messages li.message[data-dir="out"][data-status="delivered"]').filter({ hasText: text });
  await m.waitFor();
  return m;
}

/** Waits for exactly one message `text` from `nick` in the open room. */
export async function expectRoomMessage(page, nick, text) {
  const m = page.locator(`#room-messages li.message[data-dir="in"][data-nick="${nick}"]`).filter({ hasText: text });
  await m.waitFor();
  assert.equal(await m.count(), 1);
  return m;
}
