// Headless Chromium from Debian (/usr/bin/chromium) driven by playwright-core. Never downloads a browser.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ARTIFACTS = path.resolve(here, '../../artifacts');

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--disable-dev-shm-usage',
    ],
  });
}

/**
 * A page that records console errors and uncaught page errors in `page.problems` (tests assert it is
 * empty: "no console errors").
 */
export async function newPage(browser, { viewport = { width: 1280, height: 800 }, colorScheme = 'light', ignore = [] } = {}) {
  const context = await browser.newContext({ viewport, colorScheme });
  return newTab(context, { ignore });
}

/** Another page in the same browser context (a second tab: same localStorage, so the same user). */
export async function newTab(context, { ignore = [] } = {}) {
  const page = await context.newPage();
  page.problems = [];
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    const url = msg.location()?.url ?? '';
    if (ignore.some((re) => re.test(text) || re.test(url))) return;
    page.problems.push(`console.error: ${text}${url ? ` (${url})` : ''}`);
  });
  page.on('pageerror', (err) => page.problems.push(`pageerror: ${err.message}`));
  return page;
}

export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}
