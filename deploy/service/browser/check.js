#!/usr/bin/env node
// Real-browser check of the study's LMF_04 ("after migration a logged-in user refreshes
// the page and is still logged in"), with Debian's Chromium driven by playwright-core.
//
//   node check.js login --state FILE [--url http://lb/] [--user user1 --password pass1]
//   node check.js check --state FILE [--url http://lb/]
//
// login: logs in through the form, opens the player of the first video, checks that
// the video plays (currentTime advances), and saves the browser's state (cookies) to
// FILE. check: starts a new browser with that state, reloads the player page, and
// reports whether the user is still logged in and the video still plays.
// Prints one JSON object; exit 0 when logged in and playing, 1 when not, 2 on bad use.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

function usage(msg) {
  process.stderr.write(`browser check: ${msg}\n` +
    'usage: check.js login|check --state FILE [--url URL] [--user U --password P] [--play-seconds S]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { url: 'http://lb/', user: 'user1', password: 'pass1', playSeconds: 2,
                 lbAddress: '10.231.0.10', timeoutMs: 20000 };
  opts.command = argv[0];
  if (opts.command !== 'login' && opts.command !== 'check') usage('first argument must be login or check');
  for (let i = 1; i < argv.length; i += 2) {
    const key = argv[i];
    const value = argv[i + 1];
    if (value === undefined) usage(`${key} needs a value`);
    switch (key) {
      case '--state': opts.state = value; break;
      case '--url': opts.url = value; break;
      case '--user': opts.user = value; break;
      case '--password': opts.password = value; break;
      case '--play-seconds': opts.playSeconds = Number(value); break;
      case '--lb-address': opts.lbAddress = value; break;
      case '--timeout-ms': opts.timeoutMs = Number(value); break;
      default: usage(`unknown option ${key}`);
    }
  }
  if (!opts.state) usage('--state FILE is required');
  if (!(opts.playSeconds > 0 && opts.playSeconds <= 30)) usage('--play-seconds must be in (0, 30]');
  if (!opts.url.endsWith('/')) opts.url += '/';
  return opts;
}

async function launch(opts) {
  // A fresh profile directory every time: only the saved storage state carries over.
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-chromium-'));
  const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--no-proxy-server', '--autoplay-policy=no-user-gesture-required',
    // The lab's host names are not in the machine's /etc/hosts.
    `--host-resolver-rules=MAP lb ${opts.lbAddress}`];
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.FERRY_CHROMIUM || '/usr/bin/chromium',
    headless: true, args, timeout: opts.timeoutMs,
  });
  context.setDefaultTimeout(opts.timeoutMs);
  return { context, profile };
}

async function whoami(page, opts) {
  return page.evaluate(async (url) => {
    const r = await fetch(url, { cache: 'no-store', credentials: 'same-origin' });
    return r.ok ? r.json() : { logged_in: false, user: null, status: r.status };
  }, new URL('whoami.php', opts.url).toString());
}

// Plays the player's <video> for a while and reports whether currentTime advanced.
async function playCheck(page, opts) {
  const video = page.locator('video#player');
  if (await video.count() === 0) return { player: false, plays: false };
  const start = await page.evaluate(async () => {
    const v = document.querySelector('video#player');
    v.muted = true;
    try { await v.play(); } catch (e) { return { error: String(e) }; }
    return { t: v.currentTime };
  });
  if (start.error) return { player: true, plays: false, error: start.error };
  await page.waitForTimeout(opts.playSeconds * 1000);
  const end = await page.evaluate(() => {
    const v = document.querySelector('video#player');
    return { t: v.currentTime, error: v.error ? v.error.code : null, readyState: v.readyState };
  });
  return { player: true, plays: end.t > start.t + 0.25 * opts.playSeconds,
           current_time_start: start.t, current_time_end: end.t, media_error: end.error };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const report = { command: opts.command, url: opts.url, logged_in: false, user: null,
                   player: false, plays: false };
  let state = null;
  if (opts.command === 'check') {
    try { state = JSON.parse(fs.readFileSync(opts.state, 'utf8')); } catch (e) {
      usage(`no saved browser state in ${opts.state} (run 'login' first): ${e.message}`);
    }
  }
  const { context, profile } = await launch(opts);
  try {
    const page = context.pages()[0] || await context.newPage();
    if (opts.command === 'login') {
      await page.goto(new URL('login.php', opts.url).toString());
      await page.fill('#user', opts.user);
      await page.fill('#password', opts.password);
      const [response] = await Promise.all([
        page.waitForNavigation(),
        page.click('#login'),
      ]);
      report.login_status = response ? response.status() : null;
      report.after_login = new URL(page.url()).pathname;
      const first = page.locator('a.video').first();
      if (await first.count() === 0) {
        report.error = 'no video listed on ' + report.after_login;
      } else {
        report.video = (await first.textContent()).trim();
        await Promise.all([page.waitForNavigation(), first.click()]);
      }
    } else {
      await context.addCookies(state.cookies || []);
      report.video = state.ferry_video;
      const target = report.video ? `player.php?v=${encodeURIComponent(report.video)}` : 'videos.php';
      // The user refreshes the player page.
      await page.goto(new URL(target, opts.url).toString());
    }
    report.page = new URL(page.url()).pathname;
    const who = await whoami(page, opts);
    report.logged_in = who.logged_in === true;
    report.user = who.user || null;
    if (report.page === '/player.php') Object.assign(report, await playCheck(page, opts));
    const saved = await context.storageState();
    saved.ferry_video = report.video;
    fs.writeFileSync(opts.state, JSON.stringify(saved, null, 1));
  } catch (e) {
    report.error = String(e.message || e).split('\n')[0];
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(report) + '\n');
  process.exit(report.logged_in && report.plays ? 0 : 1);
}

main().catch((e) => { process.stderr.write(`browser check: ${e.stack || e}\n`); process.exit(1); });
