// Browser end-to-end test of scrolling back through history: "Load older messages" pages the archive (XEP-0313 with RSM) in a 1:1 conversation and in a room.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RookeryServer } from './lib/server.mjs';
import { launchBrowser, newUserPage, screenshot } from './lib/browser.mjs';
import { Peer } from './lib/peer.mjs';
import { addContact, contact, joinRoom, openChat, roomJoined, roomMessage, signedIn, signIn, waitOnline } from './lib/app.mjs';

const PASSWORD = 'password123';

describe('history from the archive', { concurrency: false }, () => {
  let server, browser, peer, alice;

  before(async () => {
    server = await RookeryServer.start({ name: 'history' });
    for (const u of ['alice', 'dave']) await server.addUser(`${u}@localhost`, PASSWORD);
    browser = await launchBrowser();
    peer = await Peer.start({ jid: 'dave@localhost', password: PASSWORD, port: server.c2sPort });
  });

  after(async () => {
    await peer?.stop();
    await browser?.close();
    await server?.stop();
  });

  test('"Load older messages" brings back the start of a long conversation', async () => {
    alice = await newUserPage(browser, 'alice');
    await signIn(alice, server, { user: 'alice', password: PASSWORD, remember: true });
    await signedIn(alice, 'alice@localhost');
    await addContact(alice, 'dave@localhost');
    await waitOnline(alice, 'dave@localhost');
    peer.command({ cmd: 'send-many', to: 'alice@localhost', prefix: 'line', count: 65 });
    // All 65 arrived (and so are archived).
    await contact(alice, 'dave@localhost').locator('.unread').filter({ hasText: /^65$/ }).waitFor();

    await alice.reload();
    await signedIn(alice, 'alice@localhost');
    await openChat(alice, 'dave@localhost');
    const lines = alice.locator('#messages li.message[data-dir="in"]');
    const line = (text) => alice.locator('#messages li.message .body').filter({ hasText: new RegExp(`^${text}$`) });
    // The newest 50 from the archive: line 16 to line 65.
    await lines.filter({ hasText: 'line 65' }).waitFor();
    await lines.filter({ hasText: 'line 16' }).waitFor();
    assert.equal(await lines.count(), 50);
    assert.equal(await line('line 15').count(), 0);
    const older = alice.locator('#messages .load-older-button');
    await older.waitFor();
    await screenshot(alice, 'history-01-before-loading-older');

    await older.click();
    await line('line 01').waitFor();
    assert.equal(await lines.count(), 65);
    // In order, oldest first, although many share the same second in the archive.
    const bodies = await alice.locator('#messages li.message .body').allInnerTexts();
    assert.deepEqual(bodies, Array.from({ length: 65 }, (_, i) => `line ${String(i + 1).padStart(2, '0')}`));
    // Everything is loaded: the button gives way to the start of the conversation.
    await alice.locator('#messages .history-start').waitFor();
    assert.equal(await older.count(), 0);
    await screenshot(alice, 'history-02-start-of-conversation');
  });

  test('scrolling to the top of a room loads its older messages from the room archive', async () => {
    const room = 'archive@conference.localhost';
    peer.command({ cmd: 'muc-join', room, nick: 'dave' });
    await peer.waitFor((e) => e.event === 'muc-joined' && e.room === room, 15000, 'joining the room');
    peer.command({ cmd: 'send-many', to: room, prefix: 'room line', count: 30, type: 'groupchat' });
    await peer.waitFor((e) => e.event === 'muc-message' && e.body === 'room line 30', 15000, 'the last room message');

    await joinRoom(alice, room);
    await roomJoined(alice, room);
    const line = (text) => alice.locator('#room-messages li.message .body').filter({ hasText: new RegExp(`^${text}$`) });
    // The room sends its last 20 messages as history on join.
    await roomMessage(alice, 'room line 30').waitFor();
    await roomMessage(alice, 'room line 11').waitFor();
    assert.equal(await line('room line 10').count(), 0);
    await alice.locator('#room-messages .load-older-button').waitFor();

    // Scrolling up to the top (the mouse wheel, as a person would) asks the room's archive for more.
    const list = alice.locator('#room-messages');
    await list.hover();
    await alice.mouse.wheel(0, -20000);
    await line('room line 01').waitFor();
    await alice.locator('#room-messages .history-start').waitFor();
    const bodies = await alice.locator('#room-messages li.message .body').allInnerTexts();
    assert.deepEqual(bodies, Array.from({ length: 30 }, (_, i) => `room line ${String(i + 1).padStart(2, '0')}`));
    await screenshot(alice, 'history-03-room-start');
  });
});
