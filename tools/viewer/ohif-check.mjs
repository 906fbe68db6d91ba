// Drives OHIF (served by tests/viewer_support.py) in Debian's chromium, as a radiologist would,
// and reports what OHIF itself holds: tests/integration/test_ohif_viewer.py asserts on it.
//
//   node ohif-check.mjs <plan.json>
//
// plan.json: {"url": viewer origin, "chromium": path, "out": folder for screenshots and result.json,
//             "timeout_ms": per wait, "studies": [{"name", "uid", "sr", "seg", "text_sr", "measurements"}]}
// where sr/seg/text_sr are the Series Descriptions of the gateway's series (text_sr may be null)
// and measurements the number of measurement groups in the SR (the wait after tracking; when a
// group is not tracked, the wait ends at the timeout and the test reports what OHIF holds).
//
// Per study: open it; double-click the SR; accept "track measurements"; read the tracked
// measurements (window.services.measurementService) and the measurement panel; double-click the
// SEG, accept loading it, read its segments (segmentationService) and the segmentation panel;
// double-click the text SR and read the viewport text.  Every console error and warning and
// every page error is recorded.  Screenshots: <out>/<name>-<step>.png.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

const plan = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
fs.mkdirSync(plan.out, { recursive: true });
const timeout = plan.timeout_ms || 60000;
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

// The flags the project's CI uses: no GPU (WebGL through SwiftShader, which OHIF needs to draw
// the image at all), no network besides loopback, a fresh profile.
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'gazex-ohif-profile-'));
const browser = await puppeteer.launch({
  executablePath: plan.chromium,
  headless: true,
  userDataDir: profile,
  defaultViewport: { width: 1600, height: 1000 },
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--enable-unsafe-swiftshader', '--disable-quic',
    '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--window-size=1600,1000',
  ],
});

const result = { studies: [] };
try {
  for (const study of plan.studies) {
    result.studies.push(await checkStudy(study));
  }
} finally {
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
  fs.writeFileSync(path.join(plan.out, 'result.json'), JSON.stringify(result, null, 1));
}

async function checkStudy(study) {
  const page = await browser.newPage();
  const report = { name: study.name, console: [], steps: [], screenshots: [] };
  page.on('console', message => {
    if (['error', 'warn', 'assert'].includes(message.type())) {
      report.console.push({ type: message.type(), text: message.text(), url: message.location()?.url || '' });
    }
  });
  page.on('pageerror', error => report.console.push({ type: 'pageerror', text: String(error?.stack || error) }));
  page.on('requestfailed', request =>
    report.console.push({ type: 'requestfailed', text: `${request.url()} ${request.failure()?.errorText}` }));

  const shot = async step => {
    const file = path.join(plan.out, `${study.name}-${step}.png`);
    await page.screenshot({ path: file });
    report.screenshots.push(file);
  };
  const step = async (name, action) => {
    try {
      await action();
      report.steps.push({ name, ok: true });
    } catch (error) {
      report.steps.push({ name, ok: false, error: String(error?.message || error) });
      await shot(`failed-${name}`).catch(() => {});
      throw error;
    }
  };
  const doubleClickSeries = async description => {
    const handle = await page.waitForFunction(text => {
      const labels = [...document.querySelectorAll('[data-cy="series-description-label"], span, div')];
      return labels.find(el => el.childElementCount === 0 && el.textContent.trim() === text) || null;
    }, { timeout }, description);
    const box = await handle.asElement().boundingBox();
    await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2, { clickCount: 2 });
  };
  const clickButton = async (text, wait = timeout) => {
    const handle = await page.waitForFunction(label => {
      return [...document.querySelectorAll('button')].find(b => b.textContent.trim() === label && b.offsetParent) || null;
    }, { timeout: wait }, text);
    await handle.asElement().click();
  };
  const waitForText = text => page.waitForFunction(t => document.body.innerText.includes(t), { timeout }, text);

  try {
    await step('open study', async () => {
      await page.goto(`${plan.url}/viewer?StudyInstanceUIDs=${study.uid}`, { waitUntil: 'networkidle0', timeout });
      await page.waitForFunction(() => window.services && window.cornerstone, { timeout });
      // The first-visit tour covers the toolbar: dismiss it when it is shown.
      await clickButton('Skip all', 5000).catch(() => {});
      await page.waitForFunction(() => {
        const element = window.cornerstone.getEnabledElements()[0];
        return element && element.viewport.getCurrentImageId && element.viewport.getCurrentImageId();
      }, { timeout });
    });
    await shot('1-study');

    await step('open SR', async () => {
      await doubleClickSeries(study.sr);
      await waitForText('Do you want to continue tracking measurements for this study?');
    });
    report.preview = await page.evaluate(() =>
      window.cornerstoneTools.annotation.state.getAllAnnotations()
        .filter(a => a.metadata.toolName === 'DICOMSRDisplay')
        .map(a => ({ graphicType: a.metadata.graphicType, points: (a.data.handles?.points || []).length })));
    await shot('2-sr');

    await step('track SR', async () => {
      await clickButton('Yes');
      await page.waitForFunction(() => window.services.measurementService.getMeasurements().length > 0, { timeout });
      // then every measurement group of the SR, when the plan says how many; a group OHIF does
      // not track never arrives, so this wait ends at the timeout and the test sees what is there
      await page.waitForFunction(
        count => window.services.measurementService.getMeasurements().length >= count,
        { timeout: Math.min(timeout, 30000) }, study.measurements || 1,
      ).catch(() => report.steps.push({ name: 'all measurements tracked', ok: false }));
      await sleep(1500); // let OHIF finish drawing and computing its statistics
    });
    report.measurements = await page.evaluate(() =>
      window.services.measurementService.getMeasurements().map(m => ({
        label: m.label, toolName: m.toolName, points: (m.points || []).length,
        finding: m.finding?.text || m.finding?.CodeMeaning || null,
      })));
    await step('measurement panel', async () => {
      await page.click('[data-cy="trackedMeasurements-btn"]');
      await waitForText(report.measurements[0]?.label || 'Measurements');
    });
    report.measurementPanel = await page.evaluate(() => document.body.innerText);
    await shot('3-tracked');

    await step('open SEG', async () => {
      await doubleClickSeries(study.seg);
      await clickButton('Yes').catch(() => {}); // "Do you want to open this Segmentation?" when asked
      await page.waitForFunction(() => {
        const segmentations = window.services.segmentationService.getSegmentations();
        return segmentations.length > 0 && Object.keys(segmentations[0].segments || {}).length > 0;
      }, { timeout });
      await sleep(1500);
    });
    report.segmentations = await page.evaluate(() =>
      window.services.segmentationService.getSegmentations().map(s => ({
        label: s.label,
        segments: Object.values(s.segments || {}).filter(Boolean).map(x => ({ index: x.segmentIndex, label: x.label })),
      })));
    await step('segmentation panel', async () => {
      await page.click('[data-cy="panelSegmentation-btn"]').catch(() => {});
      await sleep(1000);
    });
    report.segmentationPanel = await page.evaluate(() => document.body.innerText);
    await shot('4-seg');

    if (study.text_sr) {
      await step('open text SR', async () => {
        await doubleClickSeries(study.text_sr);
        await page.waitForFunction(() => /1\.\s/.test(document.body.innerText), { timeout });
        await sleep(1000);
      });
      report.textViewport = await page.evaluate(() => document.body.innerText);
      await shot('5-text-sr');
    }
  } catch (error) {
    report.failure = String(error?.message || error);
  } finally {
    await page.close();
  }
  return report;
}
