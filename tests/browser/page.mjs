// Loads storekeeper's status page in Debian's headless Chromium and checks what a person sees.
// Run by tests/page.rs: `node page.mjs <page URL> <screenshot path> <expectations JSON>`.
// Prints one line per check and exits non-zero on the first failure.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [url, shot, expectJson] = process.argv.slice(2);
const expected = JSON.parse(expectJson);
const origin = new URL(url).origin;

function check(ok, what, detail = '') {
  console.log(`${ok ? 'ok' : 'FAIL'} - ${what}${detail ? `: ${detail}` : ''}`);
  if (!ok) throw new Error(what);
}

// A fresh profile, and no background traffic: this machine's network is closed.
const profile = mkdtempSync(join(tmpdir(), 'storekeeper-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1400, height: 900 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const requests = [];
const dialogs = [];
let failed = false;
try {
  context.on('request', (r) => requests.push(r.url()));
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  const response = await page.goto(url, { waitUntil: 'load' });
  check(response.status() === 200, 'the page loads', String(response.status()));
  const csp = response.headers()['content-security-policy'] ?? '';
  check(csp.includes("default-src 'none'") && !csp.includes('unsafe'), 'a strict CSP', csp);
  const refresh = await page.getAttribute('meta[http-equiv="refresh"]', 'content');
  check(Number(refresh) > 0, 'the page refreshes itself', refresh);

  const rows = await page.$$eval('#stores tbody tr[data-phase]', (trs) => trs.map((tr) => ({
    id: tr.id,
    phase: tr.dataset.phase,
    badge: tr.querySelector('.phase')?.textContent,
    badgeColour: getComputedStyle(tr.querySelector('.phase')).backgroundColor,
    title: tr.querySelector('.title')?.textContent ?? null,
    reason: tr.querySelector('td:nth-child(3) .muted')?.textContent ?? null,
    url: tr.querySelector('td.url a')?.getAttribute('href') ?? null,
    detail: tr.querySelector('td.name a')?.getAttribute('href') ?? null,
  })));
  check(rows.length === expected.stores.length, 'one row per store', JSON.stringify(rows));
  for (const want of expected.stores) {
    const row = rows.find((r) => r.id === `store-${want.name}`);
    check(row && row.phase === want.phase && row.badge === want.phase, `${want.name} is ${want.phase}`, JSON.stringify(row));
    check(row.url === want.url, `${want.name} links to its shop`, row.url);
    if (want.title !== undefined) check(row.title === want.title, `${want.name}'s title is shown as text`, row.title);
    if (want.reason !== undefined) check(row.reason === want.reason, `${want.name}'s reason is shown as text`, row.reason);
  }
  const colours = new Set(rows.map((r) => r.badgeColour));
  check(colours.size === new Set(expected.stores.map((s) => s.phase)).size, 'each phase has its own colour', [...colours].join(' '));
  const counts = await page.$$eval('#counts li', (lis) => Object.fromEntries(lis.map((li) => [li.dataset.phase, Number(li.querySelector('.count').textContent)])));
  for (const s of expected.stores) check(counts[s.phase] >= 1, `the ${s.phase} count`, JSON.stringify(counts));

  // Hostile strings stay text: no element, no script, no dialog.
  check((await page.$$('script')).length === 0, 'no script element on the page');
  check((await page.$$('img')).length === 0, 'no injected image element');
  check(dialogs.length === 0, 'no alert fired', dialogs.join(', '));

  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);

  // A store's detail link works (same origin, JSON).
  const first = rows[0];
  const [detail] = await Promise.all([page.waitForNavigation(), page.click(`#${first.id} td.name a`)]);
  check(detail.status() === 200, `${first.detail} answers`, String(detail.status()));
  const body = JSON.parse(await detail.text());
  check(body.name === first.id.replace(/^store-/, ''), 'the detail is that store', JSON.stringify(body));

  const foreign = requests.filter((u) => new URL(u).origin !== origin);
  check(foreign.length === 0, 'no request to any other origin', foreign.join(' '));
  console.log(`requests: ${requests.join(' ')}`);
} catch (e) {
  failed = true;
  console.log(`error: ${e.message}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
