// Browser end-to-end test of the admin page (/admin/): an administrator signs in, sees live counts and traffic, manages users, sessions and rooms, and sends an announcement; a non-administrator is turned away.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RookeryServer } from './lib/server.mjs';
import { launchBrowser, newUserPage, screenshot } from './lib/browser.mjs';
import { signedIn, signIn } from './lib/app.mjs';

const PASSWORD = 'password123';

describe('the admin page against a live Rookery', { concurrency: false }, () => {
  let server, browser, admin, alice;

  before(async () => {
    server = await RookeryServer.start({ name: 'admin', admins: ['boss@localhost'] });
    for (const u of ['boss', 'alice']) await server.addUser(`${u}@localhost`, PASSWORD);
    browser = await launchBrowser();
    admin = await newUserPage(browser, 'admin');
    alice = await newUserPage(browser, 'alice');
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  async function adminSignIn(page, user) {
    await page.goto(`${server.url}/admin/`);
    await page.locator('#login-form input[name=jid]').fill(`${user}@localhost`);
    await page.locator('#login-form input[name=password]').fill(PASSWORD);
    await page.locator('#login-form button[type=submit]').click();
  }

  const row = (table, jid) => admin.locator(`#${table} tr[data-jid="${jid}"]`);

  test('a user who is not an administrator is turned away', async () => {
    await adminSignIn(admin, 'alice');
    await admin.locator('#login-error').filter({ hasText: 'alice@localhost is not an administrator' }).waitFor();
    assert.equal(await admin.locator('#app').isVisible(), false);
    await admin.locator('#login-form input[name=password]').fill('wrong-password');
    await admin.locator('#login-form button[type=submit]').click();
    await admin.locator('#login-error').filter({ hasText: 'wrong address or password' }).waitFor();
    await screenshot(admin, 'admin-refused');
  });

  test('the administrator sees live counts and the sessions of the web app', async () => {
    await adminSignIn(admin, 'boss');
    await admin.locator('#who').filter({ hasText: 'boss@localhost' }).waitFor();
    await admin.locator('#c-users').filter({ hasText: /^2$/ }).waitFor();
    await signIn(alice, server, { user: 'alice', password: PASSWORD });
    await signedIn(alice, 'alice@localhost');
    // The page polls: the new session and its traffic show up without a reload.
    await admin.locator('#c-sessions').filter({ hasText: /^1$/ }).waitFor();
    await admin.locator('#sessions tr').filter({ hasText: 'alice@localhost/' }).waitFor();
    await admin.locator('#rate').filter({ hasText: /in \d+\.\d\/s/ }).waitFor();
    await row('users', 'alice@localhost').filter({ hasText: 'online' }).waitFor();
    await screenshot(admin, 'admin-dashboard');
  });

  test('users are added, disabled and deleted', async () => {
    await admin.locator('#add-user input[name=jid]').fill('carol@localhost');
    await admin.locator('#add-user input[name=password]').fill('carol-password');
    await admin.locator('#add-user button').click();
    await row('users', 'carol@localhost').waitFor();
    await admin.locator('#c-users').filter({ hasText: /^3$/ }).waitFor();
    await row('users', 'carol@localhost').locator('button', { hasText: 'Disable' }).click();
    await row('users', 'carol@localhost').filter({ hasText: 'disabled' }).waitFor();
    // A duplicate is refused with the reason.
    await admin.locator('#add-user input[name=jid]').fill('carol@localhost');
    await admin.locator('#add-user input[name=password]').fill('carol-password');
    await admin.locator('#add-user button').click();
    await admin.locator('#users-error').filter({ hasText: 'exists' }).waitFor();
    admin.once('dialog', (d) => d.accept());
    await row('users', 'carol@localhost').locator('button', { hasText: 'Delete' }).click();
    await row('users', 'carol@localhost').waitFor({ state: 'detached' });
  });

  test('rooms are created and destroyed; an announcement reaches the sessions', async () => {
    await admin.locator('#add-room input[name=jid]').fill('lobby@conference.localhost');
    await admin.locator('#add-room input[name=name]').fill('Lobby');
    await admin.locator('#add-room button').click();
    await row('rooms', 'lobby@conference.localhost').filter({ hasText: 'Lobby' }).waitFor();
    await admin.locator('#c-rooms').filter({ hasText: /^1$/ }).waitFor();

    await admin.locator('#announce input[name=subject]').fill('Maintenance');
    await admin.locator('#announce textarea[name=body]').fill('Back at noon');
    await admin.locator('#announce button').click();
    await admin.locator('#announce-result').filter({ hasText: 'Sent to 1 session(s).' }).waitFor();
    await screenshot(admin, 'admin-rooms-and-announcement');

    admin.once('dialog', (d) => d.accept());
    await row('rooms', 'lobby@conference.localhost').locator('button', { hasText: 'Destroy' }).click();
    await row('rooms', 'lobby@conference.localhost').waitFor({ state: 'detached' });
  });

  test('a session is signed out from the page', async () => {
    await admin.locator('#sessions tr').filter({ hasText: 'alice@localhost/' }).locator('button').click();
    await admin.locator('#c-sessions').filter({ hasText: /^0$/ }).waitFor();
    await admin.locator('#sessions tr').first().waitFor({ state: 'detached' });
    await admin.locator('#logout').click();
    await admin.locator('#login').waitFor();
    // The token died with the sign-out: a reload shows the sign-in form.
    await admin.reload();
    assert.equal(await admin.locator('#login').isVisible(), true);
  });
});
