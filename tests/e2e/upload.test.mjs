// Browser end-to-end test of file sharing in Rookery's web app: an image attached in a 1:1 chat shows inline on the other side, a file shared in a room shows as a link (XEP-0363 upload, XEP-0066 URL).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RookeryServer } from './lib/server.mjs';
import { launchBrowser, newUserPage, screenshot } from './lib/browser.mjs';
import { addContact, joinRoom, openChat, openRoom, roomJoined, signedIn, signIn, waitOnline } from './lib/app.mjs';

const PASSWORD = 'password123';
const ROOM = 'files@conference.localhost';

/** A 64×48 PNG drawn by the browser itself. */
async function png(page) {
  const url = await page.evaluate(() => {
    const c = document.createElement('canvas');
    c.width = 64;
    c.height = 48;
    const g = c.getContext('2d');
    g.fillStyle = '#1f6f5c';
    g.fillRect(0, 0, 64, 48);
    g.fillStyle = '#ffffff';
    g.fillRect(16, 12, 32, 24);
    return c.toDataURL('image/png');
  });
  return Buffer.from(url.split(',')[1], 'base64');
}

/** Waits until the image in `selector` has loaded with the given width. */
async function imageLoaded(page, selector, width) {
  await page.waitForFunction(
    ([sel, w]) => {
      const img = document.querySelector(sel);
      return !!img && img.complete && img.naturalWidth === w;
    },
    [selector, width],
  );
}

describe('file sharing against a live Rookery', { concurrency: false }, () => {
  let server, browser;
  const pages = {};

  before(async () => {
    server = await RookeryServer.start({ name: 'upload' });
    for (const u of ['alice', 'bob']) await server.addUser(`${u}@localhost`, PASSWORD);
    browser = await launchBrowser();
    for (const u of ['alice', 'bob']) {
      const page = (pages[u] = await newUserPage(browser, u));
      await signIn(page, server, { user: u, password: PASSWORD });
      await signedIn(page, `${u}@localhost`);
    }
    const { alice, bob } = pages;
    await addContact(alice, 'bob@localhost');
    await bob.locator('#requests .request[data-jid="alice@localhost"] button.accept').click();
    await waitOnline(alice, 'bob@localhost');
    await waitOnline(bob, 'alice@localhost');
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('an image attached from the keyboard shows inline for both', async () => {
    const { alice, bob } = pages;
    await openChat(alice, 'bob@localhost');
    await openChat(bob, 'alice@localhost');
    const image = await png(alice);
    // The attach button is reached with Tab from the message field and opened with Enter.
    await alice.locator('#composer').focus();
    await alice.keyboard.press('Shift+Tab');
    assert.equal(await alice.evaluate(() => document.activeElement?.id), 'attach');
    // locator.press waits until the button is attached and enabled (the view may re-render as
    // presence and PEP updates arrive).
    const [chooser] = await Promise.all([alice.waitForEvent('filechooser'), alice.locator('#attach').press('Enter')]);
    await chooser.setFiles({ name: 'sunset.png', mimeType: 'image/png', buffer: image });

    await imageLoaded(alice, '#messages li.message[data-dir="out"] .attachment-image img', 64);
    await imageLoaded(bob, '#messages li.message[data-dir="in"] .attachment-image img', 64);
    const img = bob.locator('#messages li.message[data-dir="in"] .attachment-image img');
    assert.equal(await img.getAttribute('alt'), 'sunset.png');
    // The link goes to the uploaded file itself, byte for byte.
    const href = await bob.locator('#messages li.message[data-dir="in"] a.attachment').getAttribute('href');
    assert.match(href, /\/upload\/[0-9a-f]{32}\/sunset\.png$/);
    const fetched = await bob.evaluate(async (u) => {
      const r = await fetch(u);
      return { type: r.headers.get('content-type'), bytes: Array.from(new Uint8Array(await r.arrayBuffer())) };
    }, href);
    assert.equal(fetched.type, 'image/png');
    assert.deepEqual(Buffer.from(fetched.bytes), image);
    await screenshot(bob, 'upload-01-inline-image');
    // The attach button is back and focused for the next file.
    assert.equal(await alice.evaluate(() => document.activeElement?.id), 'attach');
  });

  test('a file shared in a room shows as a link', async () => {
    const { alice, bob } = pages;
    await joinRoom(alice, 'files');
    await roomJoined(alice, ROOM);
    await joinRoom(bob, 'files');
    await roomJoined(bob, ROOM);
    await openRoom(alice, ROOM);
    const text = Buffer.from('minutes of the meeting\n');
    const [chooser] = await Promise.all([bob.waitForEvent('filechooser'), bob.locator('#room-attach').click()]);
    await chooser.setFiles({ name: 'minutes.txt', mimeType: 'text/plain', buffer: text });
    const link = alice.locator('#room-messages li.message[data-dir="in"][data-nick="bob"] a.attachment-file');
    await link.filter({ hasText: 'minutes.txt' }).waitFor();
    await bob.locator('#room-messages li.message[data-dir="out"][data-status="delivered"] a.attachment-file').waitFor();
    const body = await alice.evaluate(async (u) => (await fetch(u)).text(), await link.getAttribute('href'));
    assert.equal(body, text.toString());
    await screenshot(alice, 'upload-02-room-file');
  });
});
