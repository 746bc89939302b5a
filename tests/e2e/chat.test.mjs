// Browser end-to-end test of Rookery's web app: sign-in errors, registration, contacts, chat with typing and receipts, slixmpp interop, reload, BOSH, reconnect.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RookeryServer } from './lib/server.mjs';
import { launchBrowser, newUserPage, screenshot } from './lib/browser.mjs';
import { Peer } from './lib/peer.mjs';
import { addContact, contact, expectIncoming, openChat, send, signedIn, signIn, waitOnline } from './lib/app.mjs';

const PASSWORD = 'password123';

describe('web app against a live Rookery', { concurrency: false }, () => {
  let server, browser, peer;
  const pages = {};

  before(async () => {
    server = await RookeryServer.start({ name: 'web' });
    for (const u of ['alice', 'bob', 'dave']) await server.addUser(`${u}@localhost`, PASSWORD);
    browser = await launchBrowser();
  });

  after(async () => {
    await peer?.stop();
    await browser?.close();
    await server?.stop();
  });

  test('a wrong password shows an error', async () => {
    const page = (pages.alice = await newUserPage(browser, 'alice'));
    await page.goto(server.url);
    await screenshot(page, '01-sign-in');
    await signIn(page, server, { user: 'alice', password: 'not-the-password' });
    const err = page.locator('#login-error');
    await err.filter({ hasText: 'Wrong username or password' }).waitFor();
    await screenshot(page, '02-wrong-password');
    assert.equal(await page.locator('#me-jid').count(), 0);
  });

  test('a new account can be created with the form', async () => {
    const page = await newUserPage(browser, 'carol');
    await page.goto(server.url);
    await page.locator('#login-toggle').click();
    await page.locator('#login-title').filter({ hasText: 'Create an account' }).waitFor();
    await page.locator('#login-user').fill('carol');
    await page.locator('#login-password').fill('carols-secret');
    await page.locator('#login-submit').click();
    await signedIn(page, 'carol@localhost');
    // The account is real: sign out, sign in again with it.
    await page.locator('#sign-out').click();
    await page.locator('#login-info').filter({ hasText: 'signed out' }).waitFor();
    await page.locator('#login-password').fill('carols-secret');
    await page.locator('#login-submit').click();
    await signedIn(page, 'carol@localhost');
    // Registering the same name again is refused with a clear message.
    const other = await newUserPage(browser, 'carol2');
    await other.goto(server.url);
    await other.locator('#login-toggle').click();
    await other.locator('#login-user').fill('carol');
    await other.locator('#login-password').fill('whatever-else');
    await other.locator('#login-submit').click();
    await other.locator('#login-error').filter({ hasText: 'already taken' }).waitFor();
    await other.context().close();
    await page.context().close();
  });

  test('two browser users add each other, accept, and see live presence', async () => {
    const alice = pages.alice;
    await signIn(alice, server, { user: 'alice', password: PASSWORD });
    await signedIn(alice, 'alice@localhost');
    const bob = (pages.bob = await newUserPage(browser, 'bob'));
    await signIn(bob, server, { user: 'bob@localhost', password: PASSWORD, remember: true });
    await signedIn(bob, 'bob@localhost');

    await addContact(alice, 'bob@localhost');
    const request = bob.locator('#requests .request[data-jid="alice@localhost"]');
    await request.waitFor();
    await screenshot(bob, '03-contact-request');
    await request.locator('button.accept').click();
    // Bob's acceptance asks for Alice's presence back; Alice's app approves it (she asked first).
    await waitOnline(alice, 'bob@localhost');
    await waitOnline(bob, 'alice@localhost');
    assert.equal(await alice.locator('#requests .request').count(), 0);

    // Status changes show up live.
    await bob.locator('#my-show').selectOption('away');
    await bob.locator('#my-status').fill('at lunch');
    await bob.locator('#my-status').press('Enter');
    await alice.locator('li.contact[data-jid="bob@localhost"][data-show="away"]').filter({ hasText: 'at lunch' }).waitFor();
    await bob.locator('#my-show').selectOption('online');
    await waitOnline(alice, 'bob@localhost');
    await screenshot(alice, '04-contacts');
  });

  test('chat both ways with typing notifications, receipts and unread counts', async () => {
    const { alice, bob } = pages;
    await openChat(bob, 'alice@localhost');
    await openChat(alice, 'bob@localhost');

    await alice.locator('#composer').pressSequentially('Hello B');
    await bob.locator('#typing').filter({ hasText: 'alice is typing' }).waitFor();
    await alice.locator('#composer').pressSequentially('ob');
    await alice.locator('#composer').press('Enter');
    await expectIncoming(bob, 'Hello Bob');
    await bob.locator('#typing').filter({ hasNotText: 'typing' }).waitFor();
    // Bob's app acknowledged it (XEP-0184): Alice's message turns delivered.
    await alice.locator('#messages li.message[data-dir="out"][data-status="delivered"]').filter({ hasText: 'Hello Bob' }).waitFor();

    const reply = await send(bob, 'Hi Alice, how are you?');
    await expectIncoming(alice, 'Hi Alice, how are you?');
    await reply.and(bob.locator('[data-status="delivered"]')).waitFor();
    assert.match(await alice.locator('#messages li.message[data-dir="in"] time').last().innerText(), /\d/);
    await screenshot(alice, '05-chat');

    // Bob leaves the conversation (Escape, from the keyboard); new messages count as unread.
    await bob.locator('#composer').press('Escape');
    await bob.locator('#no-chat').waitFor();
    await send(alice, 'one');
    await send(alice, 'two');
    await contact(bob, 'alice@localhost').locator('.unread').filter({ hasText: '2' }).waitFor();
    assert.match(await bob.title(), /^\(2\)/);
    await screenshot(bob, '06-unread');
    await openChat(bob, 'alice@localhost');
    await contact(bob, 'alice@localhost').locator('.unread').waitFor({ state: 'detached' });
    await expectIncoming(bob, 'two');
  });

  test('a slixmpp client on TCP receives and answers', async () => {
    const alice = pages.alice;
    peer = await Peer.start({ jid: 'dave@localhost', password: PASSWORD, port: server.c2sPort });
    await addContact(alice, 'dave@localhost');
    await waitOnline(alice, 'dave@localhost');
    await openChat(alice, 'dave@localhost');
    await send(alice, 'Hello from the browser');
    const got = await peer.waitFor((e) => e.event === 'message' && e.body === 'Hello from the browser', 15000, 'the browser message');
    assert.equal(got.from, 'alice@localhost');
    await expectIncoming(alice, 'echo: Hello from the browser');
    await alice.locator('#messages li.message[data-dir="out"][data-status="delivered"]').filter({ hasText: 'Hello from the browser' }).waitFor();
    // A message the peer starts.
    peer.command({ cmd: 'send', to: 'alice@localhost', body: 'Dave here, over TCP' });
    await expectIncoming(alice, 'Dave here, over TCP');
    await screenshot(alice, '07-chat-with-slixmpp');
  });

  test('a reload keeps the session with "remember me", and asks again without it', async () => {
    const { alice, bob } = pages;
    await bob.reload();
    await signedIn(bob, 'bob@localhost');
    await waitOnline(bob, 'alice@localhost');
    await alice.reload();
    await alice.locator('#login-form').waitFor();
    assert.equal(await alice.locator('#me-jid').count(), 0);
    await signIn(alice, server, { user: 'alice', password: PASSWORD });
    await signedIn(alice, 'alice@localhost');
    await waitOnline(alice, 'bob@localhost');
    // The conversation comes back from the server's archive (XEP-0313), both directions, once.
    await openChat(alice, 'bob@localhost');
    await expectIncoming(alice, 'Hi Alice, how are you?');
    const mine = alice.locator('#messages li.message[data-dir="out"]').filter({ hasText: 'Hello Bob' });
    await mine.first().waitFor();
    assert.equal(await mine.count(), 1);
    await screenshot(alice, '12-history-after-reload');
  });

  test('the phone-width layout shows one pane at a time', async () => {
    const phone = await newUserPage(browser, 'alice-phone', { viewport: { width: 390, height: 780 } });
    await signIn(phone, server, { user: 'alice', password: PASSWORD });
    await signedIn(phone, 'alice@localhost');
    await waitOnline(phone, 'bob@localhost');
    await screenshot(phone, '08-phone-contacts');
    await openChat(pages.bob, 'alice@localhost');
    await openChat(phone, 'bob@localhost');
    assert.equal(await phone.locator('#sidebar').isVisible(), false);
    await send(phone, 'from my phone');
    await expectIncoming(pages.bob, 'from my phone');
    await screenshot(phone, '09-phone-chat');
    await phone.locator('#chat-back').click();
    await phone.locator('#sidebar').waitFor();
    await phone.context().close();
  });

  test('BOSH works as the transport', async () => {
    const page = await newUserPage(browser, 'bob-bosh');
    await signIn(page, server, { user: 'bob', password: PASSWORD, query: '?transport=bosh' });
    await signedIn(page, 'bob@localhost');
    // The slixmpp peer approves the request at once.
    await addContact(page, 'dave@localhost');
    await waitOnline(page, 'dave@localhost');
    await openChat(page, 'dave@localhost');
    await send(page, 'over BOSH');
    await expectIncoming(page, 'echo: over BOSH');
    await page.context().close();
  });

  test('a lost connection shows "reconnecting" and recovers', async () => {
    const alice = pages.alice;
    await server.stop();
    await alice.locator('#connection-banner[data-state="reconnecting"]').filter({ hasText: 'Connection lost' }).waitFor();
    await screenshot(alice, '10-reconnecting');
    await server.start();
    await alice.locator('#connection-banner').waitFor({ state: 'hidden', timeout: 40000 });
    await waitOnline(alice, 'bob@localhost');
  });
});
