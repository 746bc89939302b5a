// Browser end-to-end test of group chat (XEP-0045) in Rookery's web app: create and join rooms, occupants, messages with a slixmpp peer, history, errors, leave, reload, invitations, phone layout.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RookeryServer } from './lib/server.mjs';
import { launchBrowser, newUserPage, screenshot } from './lib/browser.mjs';
import { Peer } from './lib/peer.mjs';
import {
  expectRoomMessage,
  joinRoom,
  occupant,
  openRoom,
  roomItem,
  roomJoined,
  roomMessage,
  sendToRoom,
  signedIn,
  signIn,
} from './lib/app.mjs';

const PASSWORD = 'password123';
const SERVICE = 'conference.localhost';
const LOUNGE = `lounge@${SERVICE}`;

describe('group chat against a live Rookery', { concurrency: false }, () => {
  let server, browser, peer;
  const pages = {};

  /** The peer (nick dave) joins `room`; a room it creates gets `config` (none: an instant room). */
  async function peerJoins(room, config) {
    peer.command({ cmd: 'muc-join', room, nick: 'dave', ...(config ? { config } : {}) });
    return peer.waitFor((e) => (e.event === 'muc-joined' || e.event === 'muc-join-error') && e.room === room, 15000, `joining ${room}`);
  }

  before(async () => {
    server = await RookeryServer.start({ name: 'muc' });
    for (const u of ['alice', 'bob', 'carol', 'dave']) await server.addUser(`${u}@localhost`, PASSWORD);
    browser = await launchBrowser();
  });

  after(async () => {
    await peer?.stop();
    await browser?.close();
    await server?.stop();
  });

  test('the first to join creates the room (unlocked at once) and owns it', async () => {
    const alice = (pages.alice = await newUserPage(browser, 'alice'));
    await signIn(alice, server, { user: 'alice', password: PASSWORD });
    await signedIn(alice, 'alice@localhost');
    await alice.locator('#rooms-empty').waitFor();
    // A bare room name goes to the group chat service found by discovery; the nickname defaults to "alice".
    await joinRoom(alice, 'lounge');
    await roomJoined(alice, LOUNGE);
    const me = occupant(alice, 'alice');
    await me.locator('.badge[data-badge="owner"]').waitFor();
    assert.equal(await me.getAttribute('data-role'), 'moderator');
    await alice.locator('#room-subtitle').filter({ hasText: 'you are alice' }).waitFor();
    assert.equal(await alice.locator('#rooms-empty').isVisible(), false);
  });

  test('a second browser user joins by room address; both see each other in the occupants list', async () => {
    const bob = (pages.bob = await newUserPage(browser, 'bob'));
    await signIn(bob, server, { user: 'bob', password: PASSWORD, remember: true });
    await signedIn(bob, 'bob@localhost');
    // The room was unlocked by alice's app (instant room): others may enter.
    await joinRoom(bob, LOUNGE);
    await roomJoined(bob, LOUNGE);
    await occupant(bob, 'alice').locator('.badge[data-badge="owner"]').waitFor();
    await occupant(bob, 'bob').waitFor();
    await occupant(pages.alice, 'bob').waitFor();
    assert.equal(await occupant(pages.alice, 'bob').locator('.badge').count(), 0);
    await pages.alice.locator('#room-occupants-toggle').filter({ hasText: '2' }).waitFor({ state: 'attached' });
  });

  test('groupchat messages go both ways between browsers and the slixmpp peer', async () => {
    const { alice, bob } = pages;
    peer = await Peer.start({ jid: 'dave@localhost', password: PASSWORD, port: server.c2sPort });
    const joined = await peerJoins(LOUNGE);
    assert.equal(joined.event, 'muc-joined');
    assert.ok(!joined.codes.includes(201), 'the room already existed');
    await occupant(alice, 'dave').waitFor();
    await occupant(bob, 'dave').waitFor();

    await sendToRoom(alice, 'Hello room, alice here');
    await expectRoomMessage(bob, 'alice', 'Hello room, alice here');
    await peer.waitFor((e) => e.event === 'muc-message' && e.nick === 'alice' && e.body === 'Hello room, alice here', 15000, "alice's message");

    peer.command({ cmd: 'muc-send', room: LOUNGE, body: 'Dave says hi over TCP' });
    await expectRoomMessage(alice, 'dave', 'Dave says hi over TCP');
    await expectRoomMessage(bob, 'dave', 'Dave says hi over TCP');

    await sendToRoom(bob, 'Bob in the room');
    await expectRoomMessage(alice, 'bob', 'Bob in the room');
    await peer.waitFor((e) => e.event === 'muc-message' && e.nick === 'bob' && e.body === 'Bob in the room', 15000, "bob's message");
    // Our own messages come back from the room once: shown once, as ours.
    assert.equal(await roomMessage(alice, 'Hello room, alice here').count(), 1);
    assert.equal(await roomMessage(alice, 'Hello room, alice here').getAttribute('data-dir'), 'out');
    assert.match(await alice.locator('#room-messages li.message[data-nick="dave"] time').innerText(), /\d/);
    await screenshot(alice, 'muc-01-room');
  });

  test('messages in a room that is not open count as unread', async () => {
    const { bob } = pages;
    await bob.locator('#room-composer').press('Escape');
    await bob.locator('#no-chat').waitFor();
    peer.command({ cmd: 'muc-send', room: LOUNGE, body: 'unread one' });
    peer.command({ cmd: 'muc-send', room: LOUNGE, body: 'unread two' });
    await roomItem(bob, LOUNGE).locator('.unread').filter({ hasText: '2' }).waitFor();
    assert.match(await bob.title(), /^\(2\)/);
    await openRoom(bob, LOUNGE);
    await roomItem(bob, LOUNGE).locator('.unread').waitFor({ state: 'detached' });
    await expectRoomMessage(bob, 'dave', 'unread two');
  });

  test('a nickname in use is refused clearly; another one gets in and sees the history', async () => {
    const carol = (pages.carol = await newUserPage(browser, 'carol'));
    await signIn(carol, server, { user: 'carol', password: PASSWORD });
    await signedIn(carol, 'carol@localhost');
    await joinRoom(carol, 'lounge', { nick: 'bob' });
    await carol.locator('#room-error').filter({ hasText: 'That nickname is taken in this room' }).waitFor();
    await roomItem(carol, LOUNGE).and(carol.locator('[data-status="error"]')).waitFor();
    assert.equal(await carol.locator('#room-send').isDisabled(), true);
    await screenshot(carol, 'muc-02-nickname-taken');

    // The error offers another nickname, from the keyboard.
    await carol.locator('#room-nick').fill('carol');
    await carol.locator('#room-nick').press('Enter');
    await roomJoined(carol, LOUNGE);
    await occupant(carol, 'alice').waitFor();
    await occupant(carol, 'dave').waitFor();
    await occupant(pages.alice, 'carol').waitFor();
    // What was said before she came: the room's history, with its original times, once each.
    const early = roomMessage(carol, 'Hello room, alice here');
    await early.waitFor();
    assert.equal(await early.count(), 1);
    assert.equal(await early.getAttribute('data-history'), 'true');
    assert.equal(await early.getAttribute('data-nick'), 'alice');
    await expectRoomMessage(carol, 'dave', 'Dave says hi over TCP');
    // Live messages after the history.
    peer.command({ cmd: 'muc-send', room: LOUNGE, body: 'welcome carol' });
    const live = await expectRoomMessage(carol, 'dave', 'welcome carol');
    assert.equal(await live.getAttribute('data-history'), null);
    await carol.locator('#room-messages .history-divider').waitFor();
    await screenshot(carol, 'muc-03-history');
  });

  test('leaving removes the occupant from the others’ lists', async () => {
    const { alice, bob, carol } = pages;
    await carol.locator('#room-leave').click();
    await roomItem(carol, LOUNGE).waitFor({ state: 'detached' });
    await carol.locator('#rooms-empty').waitFor();
    await occupant(alice, 'carol').waitFor({ state: 'detached' });
    await occupant(bob, 'carol').waitFor({ state: 'detached' });
    peer.command({ cmd: 'muc-leave', room: LOUNGE, nick: 'dave' });
    await occupant(alice, 'dave').waitFor({ state: 'detached' });
    await occupant(bob, 'dave').waitFor({ state: 'detached' });
    await occupant(alice, 'bob').waitFor();
  });

  test('joined rooms are remembered across a reload and joined again', async () => {
    const { alice, bob } = pages;
    await bob.reload();
    await signedIn(bob, 'bob@localhost');
    await roomItem(bob, LOUNGE).and(bob.locator('[data-status="joined"]')).waitFor();
    await openRoom(bob, LOUNGE);
    await occupant(bob, 'alice').waitFor();
    const hello = roomMessage(bob, 'Hello room, alice here');
    await hello.waitFor();
    assert.equal(await hello.count(), 1);
    // Bob's own earlier message, recognised as his (occupant id) after the reload.
    assert.equal(await roomMessage(bob, 'Bob in the room').getAttribute('data-dir'), 'out');
    await occupant(alice, 'bob').waitFor();
    await sendToRoom(bob, 'back after a reload');
    await expectRoomMessage(alice, 'bob', 'back after a reload');
  });

  test('an invitation offers to join; the room subject shows', async () => {
    const { alice } = pages;
    const den = `den@${SERVICE}`;
    const created = await peerJoins(den);
    assert.ok(created.codes.includes(201), 'dave created the room');
    peer.command({ cmd: 'muc-subject', room: den, subject: 'Plans for the weekend' });
    peer.command({ cmd: 'invite', to: 'alice@localhost', room: den, reason: 'come and plan' });
    const invite = alice.locator(`#invites .invite[data-room="${den}"]`);
    await invite.filter({ hasText: 'come and plan' }).waitFor();
    await screenshot(alice, 'muc-04-invitation');
    await invite.locator('button.accept').click();
    await roomJoined(alice, den);
    await invite.waitFor({ state: 'detached' });
    await alice.locator('#room-subject').filter({ hasText: 'Plans for the weekend' }).waitFor();
    await occupant(alice, 'dave').locator('.badge[data-badge="owner"]').waitFor();
    await screenshot(alice, 'muc-05-subject');
  });

  test('a password-protected room asks for the password', async () => {
    const { alice } = pages;
    const vault = `vault@${SERVICE}`;
    await peerJoins(vault, { 'muc#roomconfig_passwordprotectedroom': '1', 'muc#roomconfig_roomsecret': 'sesame' });
    await joinRoom(alice, 'vault');
    await alice.locator('#room-error').filter({ hasText: 'needs a password' }).waitFor();
    await roomItem(alice, vault).and(alice.locator('[data-status="password"]')).waitFor();
    await alice.locator('#room-password').fill('wrong');
    await alice.locator('#room-password').press('Enter');
    await alice.locator('#room[data-status="password"] #room-error').waitFor();
    await alice.locator('#room-password').fill('sesame');
    await alice.locator('#room-password').press('Enter');
    await roomJoined(alice, vault);
    await occupant(alice, 'dave').waitFor();
  });

  test('members-only and full rooms explain why they refuse', async () => {
    const { alice } = pages;
    const club = `club@${SERVICE}`;
    await peerJoins(club, { 'muc#roomconfig_membersonly': '1' });
    await joinRoom(alice, club);
    await alice.locator('#room-error').filter({ hasText: 'members only' }).waitFor();
    await alice.locator('#room-remove').click();
    await roomItem(alice, club).waitFor({ state: 'detached' });

    const booth = `booth@${SERVICE}`;
    await peerJoins(booth, { 'muc#roomconfig_maxusers': '1' });
    await joinRoom(alice, booth);
    await alice.locator('#room-error').filter({ hasText: 'The room is full' }).waitFor();
    await alice.locator('#room-retry').waitFor();
    await alice.locator('#room-remove').click();
    await roomItem(alice, booth).waitFor({ state: 'detached' });
  });

  test('the phone-width layout shows the room, with the occupants behind a button', async () => {
    const phone = await newUserPage(browser, 'carol-phone', { viewport: { width: 390, height: 780 } });
    await signIn(phone, server, { user: 'carol', password: PASSWORD });
    await signedIn(phone, 'carol@localhost');
    await joinRoom(phone, 'lounge');
    await roomJoined(phone, LOUNGE);
    assert.equal(await phone.locator('#sidebar').isVisible(), false);
    assert.equal(await phone.locator('#room-occupants').isVisible(), false);
    await sendToRoom(phone, 'from a phone');
    await expectRoomMessage(pages.bob, 'carol', 'from a phone');
    await screenshot(phone, 'muc-06-phone-room');
    await phone.locator('#room-occupants-toggle').click();
    await occupant(phone, 'bob').waitFor();
    assert.equal(await phone.locator('#room-messages').isVisible(), false);
    await screenshot(phone, 'muc-07-phone-occupants');
    await phone.locator('#room-occupants-toggle').click();
    await phone.locator('#room-messages').waitFor();
    await phone.locator('#room-back').click();
    await phone.locator('#sidebar').waitFor();
    await phone.context().close();
  });

  test('after a lost connection the rooms are joined again (a room being recreated is retried)', async () => {
    const { alice, bob } = pages;
    // The peer does not reconnect by itself: it leaves now. The restart empties the (temporary) room:
    // alice and bob rejoin at once, and whoever comes second may find it locked for a moment.
    await peer?.stop();
    peer = null;
    await server.stop();
    await alice.locator('#connection-banner[data-state="reconnecting"]').waitFor();
    await roomItem(alice, LOUNGE).and(alice.locator('[data-status="offline"]')).waitFor();
    await server.start();
    for (const page of [alice, bob]) {
      await page.locator('#connection-banner').waitFor({ state: 'hidden', timeout: 40000 });
      await roomItem(page, LOUNGE).and(page.locator('[data-status="joined"]')).waitFor({ state: 'attached' });
    }
    await openRoom(alice, LOUNGE);
    await occupant(alice, 'bob').waitFor();
    await sendToRoom(bob, 'after the restart');
    await expectRoomMessage(alice, 'bob', 'after the restart');
  });
});
