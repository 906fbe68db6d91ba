// Drives the gateway's web console in Debian's chromium, as IT would, and reports what the pages
// showed: tests/integration/test_console_browser.py asserts on it.
//
//   node console-check.mjs <plan.json>
//
// plan.json: {"url": console origin, "chromium": path, "out": folder for screenshots and result.json,
//             "timeout_ms": per wait, "username", "password", "study": Study Instance UID,
//             "destination": {"name", "ae_title", "host", "port"} to add, then C-ECHO,
//             "dead_delivery": id of a dead delivery to retry}
//
// Steps: log in through the form; open the study and wait for its thumbnail (<img class="overlay">)
// to load; add the destination on the configuration page and press its C-ECHO button; retry the
// dead delivery on the deliveries page and reload until it is delivered.  Every console error,
// page error and failed request is recorded.  Screenshots: <out>/<step>.png.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

const plan = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
fs.mkdirSync(plan.out, { recursive: true });
const timeout = plan.timeout_ms || 30000;
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'gazex-console-profile-'));
const browser = await puppeteer.launch({
  executablePath: plan.chromium,
  headless: true,
  userDataDir: profile,
  defaultViewport: { width: 1400, height: 1000 },
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', '--window-size=1400,1000',
  ],
});

const result = { console: [], steps: [], screenshots: [] };
const page = await browser.newPage();
page.setDefaultTimeout(timeout);
page.on('console', message => {
  if (['error', 'warn', 'assert'].includes(message.type())) {
    result.console.push({ type: message.type(), text: message.text(), url: message.location()?.url || '' });
  }
});
page.on('pageerror', error => result.console.push({ type: 'pageerror', text: String(error?.stack || error) }));
page.on('requestfailed', request =>
  result.console.push({ type: 'requestfailed', text: `${request.url()} ${request.failure()?.errorText}` }));
page.on('dialog', dialog => dialog.accept()); // the console asks before destructive actions

const shot = async name => {
  const file = path.join(plan.out, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  result.screenshots.push(file);
};
const step = async (name, action) => {
  try {
    const value = await action();
    result.steps.push({ name, ok: true, value: value ?? null });
  } catch (error) {
    result.steps.push({ name, ok: false, error: String(error?.message || error) });
    await shot(`failed-${name}`).catch(() => {});
    throw error;
  }
};
const flashes = () => page.$$eval('.flash', nodes => nodes.map(node => ({ kind: node.className, text: node.textContent.trim() })));
const submit = async selector => {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click(selector)]);
};

try {
  await step('login', async () => {
    await page.goto(`${plan.url}/studies/${plan.study}`, { waitUntil: 'load' });
    const redirected = new URL(page.url()).pathname; // no session: the login page
    await page.type('input[name=username]', plan.username);
    await page.type('input[name=password]', plan.password);
    await shot('login');
    await submit('form[action="/login"] button[type=submit]');
    return { redirected, landed: new URL(page.url()).pathname, user: await page.$eval('.who span', n => n.textContent) };
  });

  await step('study', async () => {
    await page.waitForSelector('img.overlay');
    await page.waitForFunction(
      () => [...document.querySelectorAll('img.overlay')].every(img => img.complete), { timeout });
    const images = await page.$$eval('img.overlay', nodes =>
      nodes.map(img => ({ src: img.getAttribute('src'), width: img.naturalWidth, height: img.naturalHeight })));
    const report = await page.$eval('#report', node => node.textContent).catch(() => null);
    const timeline = await page.$$eval('#timeline .step', nodes => nodes.map(node => node.textContent.trim()));
    await shot('study');
    return { images, report, timeline };
  });

  await step('add-destination', async () => {
    await page.goto(`${plan.url}/configuration`, { waitUntil: 'load' });
    const form = '#add-destination';
    const d = plan.destination;
    await page.type(`${form} input[name=name]`, d.name);
    await page.type(`${form} input[name=ae_title]`, d.ae_title);
    await page.type(`${form} input[name=host]`, d.host);
    await page.type(`${form} input[name=port]`, String(d.port));
    await submit(`${form} button[type=submit]`);
    const rows = await page.$$eval('#destinations tr[data-destination]', nodes => nodes.map(n => n.dataset.destination));
    return { rows, flashes: await flashes() };
  });

  await step('echo', async () => {
    await submit(`#destinations tr[data-destination="${plan.destination.name}"] form[action$="/echo"] button`);
    const found = await flashes();
    await shot('configuration-echo');
    return { flashes: found };
  });

  await step('retry', async () => {
    await page.goto(`${plan.url}/deliveries?status=dead`, { waitUntil: 'load' });
    const row = `#deliveries tr[data-delivery="${plan.dead_delivery}"]`;
    await page.waitForSelector(row);
    await shot('deliveries-dead');
    await submit(`${row} form[action$="/retry"] button`);
    const afterRetry = await flashes();
    const deadline = Date.now() + timeout;
    let status = null;
    while (Date.now() < deadline) {
      await page.goto(`${plan.url}/deliveries`, { waitUntil: 'load' });
      status = await page.$eval(row, node => node.dataset.status).catch(() => null);
      if (status === 'delivered') break;
      await sleep(500);
    }
    await shot('deliveries-retried');
    return { flashes: afterRetry, status };
  });

  await step('dashboard', async () => {
    await page.goto(`${plan.url}/`, { waitUntil: 'load' });
    await shot('dashboard');
    return { queue: await page.$eval('#queue', n => n.textContent.replace(/\s+/g, ' ').trim()) };
  });
} finally {
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
  fs.writeFileSync(path.join(plan.out, 'result.json'), JSON.stringify(result, null, 1));
}
