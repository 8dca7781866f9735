/**
 * compound in a real browser (Debian chromium): the sidebar fed by the kernel comm, Cancel while a cell
 * blocks the main shell, kernel restart, the pipeline view, the optimizer widget's Stop during a cell blocked in
 * job.result() with JupyterLab's "commsOverSubshells" on and off, the run's record, and Notebook 7.
 * Every wait is on a condition in the page, never a fixed delay.
 * Screenshots land in test-results/screenshots/ (kept as CI artifacts).
 */
import { expect, galata, test } from '@jupyterlab/galata';
import * as path from 'path';

const NOTEBOOKS = path.resolve(__dirname, '..', 'notebooks');
const SHOTS = path.resolve(__dirname, '..', 'test-results', 'screenshots');
const SIDEBAR_TAB = '.jp-SideBar.jp-mod-left li[data-id="compound-sidebar"]';

// Each test gets a fresh server folder: upload the committed notebooks there (typing cells would let
// CodeMirror auto-indent them).
test.beforeEach(async ({ page, tmpPath }) => {
  for (const name of ['sidebar.ipynb', 'notebook7.ipynb', 'optimize.ipynb']) {
    await page.contents.uploadFile(path.join(NOTEBOOKS, name), `${tmpPath}/${name}`);
  }
});

async function dismissNewsToast(page: any) {
  const no = page.locator('.jp-toast-button:has-text("No")');
  if (await no.count()) {
    await no.first().click();
  }
}

async function openSidebar(page: any) {
  await page.locator(SIDEBAR_TAB).click();
  const sidebar = page.locator('#compound-sidebar');
  await expect(sidebar).toBeVisible();
  return sidebar;
}

test.describe('compound sidebar', () => {
  test('the extension is activated without console errors', async ({ page }) => {
    const errors: string[] = [];
    page.on('console', (msg: any) => msg.type() === 'error' && errors.push(msg.text()));
    await page.reload();
    await expect(page.locator(SIDEBAR_TAB)).toBeVisible();
    expect(errors.filter(e => e.includes('compound'))).toEqual([]);
  });

  test('shows the loaded model and a running job, Cancel ends it while a cell blocks, restart empties it', async ({
    page,
    tmpPath
  }) => {
    await page.notebook.openByPath(`${tmpPath}/sidebar.ipynb`);
    await page.notebook.activate('sidebar.ipynb');
    await dismissNewsToast(page);
    const sidebar = await openSidebar(page);
    await expect(sidebar).toContainText('compound is not loaded in this kernel', { timeout: 60000 });

    // 1. a real (tiny) model appears with its engine statistics
    await page.notebook.runCell(0);
    expect((await page.notebook.getCellTextOutput(0))!.join('')).toContain('model loaded');
    const model = sidebar.locator('.jp-compound-model[data-model-name="tiny-llama"]');
    await expect(model).toBeVisible();
    await expect(model).toContainText('cpu · float32');
    await expect(model).toContainText('requests');
    await expect(model).toContainText(/context\s*1K tokens/); // tiny_llama's 1024 positions
    await expect(sidebar.locator('.jp-compound-device')).toContainText('CPU');

    // 2. a running job with progress and a Cancel button
    await page.notebook.runCell(1);
    const job = sidebar.locator('.jp-compound-job', { hasText: 'ui-spin' });
    await expect(job).toHaveAttribute('data-status', 'running');
    await expect(job.locator('.jp-compound-job-detail')).toContainText('step');
    await page.screenshot({ path: `${SHOTS}/sidebar-running-job.png` });

    // 3. a cell that blocks the main shell until the job ends; Cancel must still reach the kernel
    await page.notebook.runCell(2, { wait: false });
    const blockingCell = (await page.notebook.getCellLocator(2))!;
    await expect(blockingCell.locator('.jp-OutputArea')).toContainText('waiting for the job'); // inside job.result()
    await expect(blockingCell.locator('.jp-InputPrompt')).toContainText('*');
    await job.locator('button.jp-compound-cancel').click();
    await expect(job).toHaveAttribute('data-status', 'stopped', { timeout: 20000 });
    await page.notebook.waitForRun(2);
    expect((await page.notebook.getCellTextOutput(2))!.join('')).toContain('job ended: stopped');
    await page.screenshot({ path: `${SHOTS}/sidebar-job-stopped.png` });

    // 4. restart the kernel: models and jobs are gone from the view
    await page.evaluate(() => {
      void (window as any).jupyterapp.commands.execute('notebook:restart-kernel');
    });
    await page.locator('.jp-Dialog button.jp-mod-accept').click();
    await expect(sidebar).toContainText('compound is not loaded in this kernel', { timeout: 60000 });
    await expect(sidebar.locator('.jp-compound-model')).toHaveCount(0);
  });

  test('switching notebooks switches the view', async ({ page, tmpPath }) => {
    // Open both first: the file browser is hidden once the Compound panel takes the left area.
    await page.notebook.openByPath(`${tmpPath}/notebook7.ipynb`);
    await page.notebook.openByPath(`${tmpPath}/sidebar.ipynb`);
    await page.notebook.activate('sidebar.ipynb');
    await dismissNewsToast(page);
    const sidebar = await openSidebar(page);
    await page.notebook.runCell(0);
    await expect(sidebar.locator('.jp-compound-model')).toHaveCount(1);
    await expect(sidebar.locator('.jp-compound-notebook')).toContainText('sidebar.ipynb');

    await page.notebook.activate('notebook7.ipynb');
    await expect(sidebar.locator('.jp-compound-notebook')).toContainText('notebook7.ipynb');
    await expect(sidebar.locator('.jp-compound-model')).toHaveCount(0);

    await page.notebook.activate('sidebar.ipynb');
    await expect(sidebar.locator('.jp-compound-model')).toHaveCount(1);
  });
});

async function stopDuringABlockedCell(page: any, tmpPath: string, shot: string) {
  await page.notebook.openByPath(`${tmpPath}/optimize.ipynb`);
  await page.notebook.activate('optimize.ipynb');
  await dismissNewsToast(page);
  await page.notebook.runCell(0);
  await page.notebook.runCell(1);

  const view = page.locator('.compound-optimization');
  await expect(view).toBeVisible({ timeout: 60000 });
  const header = view.locator('.compound-job');
  await expect(header.locator('.compound-job-status')).toHaveText(/running/);
  // Live: the trial detail moves on while the cell is long finished.
  const detail = header.locator('.compound-job-detail');
  await expect(detail).toContainText('trial', { timeout: 30000 });
  const before = await detail.textContent();
  await expect(detail).not.toHaveText(before!, { timeout: 15000 });
  await expect(view.locator('.compound-table tbody tr').first()).toBeVisible();

  // The sidebar lists the same job, and the engine statistics move with the optimizer's LM calls.
  const sidebar = await openSidebar(page);
  const sidebarJob = sidebar.locator('.jp-compound-job', { hasText: 'ui-optimize' }).first();
  await expect(sidebarJob).toHaveAttribute('data-status', 'running');
  await expect(sidebar.locator('.jp-compound-model .jp-compound-engine')).toContainText(/requests\s*[1-9]/);

  // A cell now blocks the main shell in job.result(); the widget's Stop must still reach the job.
  await page.notebook.runCell(2, { wait: false });
  const blocking = (await page.notebook.getCellLocator(2))!;
  await expect(blocking.locator('.jp-OutputArea')).toContainText('waiting for the run');
  await expect(blocking.locator('.jp-InputPrompt')).toContainText('*');
  await page.screenshot({ path: `${SHOTS}/${shot}-running.png` });
  await header.locator('button.compound-stop').click();
  await page.notebook.waitForRun(2);
  expect((await page.notebook.getCellTextOutput(2))!.join('')).toContain('run ended: stopped');
  await expect(sidebarJob).toHaveAttribute('data-status', 'stopped');

  // The live view became the run's record: status, curve (inline SVG) and trial table, without a kernel.
  const record = page.locator('.compound-optimization-record');
  await expect(record).toHaveAttribute('data-status', 'stopped');
  await expect(record.locator('svg.compound-chart-svg')).toBeVisible();
  expect(await record.locator('svg.compound-chart-svg polyline').count()).toBeGreaterThan(0);
  await expect(record.locator('table.compound-table tbody tr').first()).toContainText('baseline');
  await page.screenshot({ path: `${SHOTS}/${shot}-record.png` });
  return sidebar;
}

test.describe('optimizer widget (commsOverSubshells on, the JupyterLab default)', () => {
  test('updates live, Stop reaches a cell blocked in job.result(), the record stays', async ({ page, tmpPath }) => {
    const sidebar = await stopDuringABlockedCell(page, tmpPath, 'optimizer-subshells');

    // A second run waited on by a blocking cell: Cancel in the sidebar ends it mid-cell.
    await page.notebook.runCell(3, { wait: false });
    const second = sidebar.locator('.jp-compound-job', { hasText: 'ui-optimize-2' });
    await expect(second).toHaveAttribute('data-status', 'running', { timeout: 30000 });
    await expect((await page.notebook.getCellLocator(3))!.locator('.jp-InputPrompt')).toContainText('*');
    await second.locator('button.jp-compound-cancel').click();
    await expect(second).toHaveAttribute('data-status', 'stopped', { timeout: 30000 });
    await page.notebook.waitForRun(3);
    expect((await page.notebook.getCellTextOutput(3))!.join('')).toContain('second run ended: stopped');
  });
});

test.describe('optimizer widget (commsOverSubshells off: VS Code, Colab, other settings)', () => {
  test.use({
    mockSettings: {
      ...galata.DEFAULT_SETTINGS,
      '@jupyterlab/apputils-extension:kernels-settings': { commsOverSubshells: 'disabled' }
    }
  });

  test('Stop still reaches a cell blocked in job.result()', async ({ page, tmpPath }) => {
    const setting = await page.evaluate(async () => {
      const settings = await (window as any).jupyterapp.serviceManager.settings.fetch(
        '@jupyterlab/apputils-extension:kernels-settings'
      );
      return JSON.stringify(settings.raw);
    });
    expect(setting).toContain('disabled'); // the control: this page really runs without comms over subshells
    await stopDuringABlockedCell(page, tmpPath, 'optimizer-no-subshells');
  });
});

test.describe('pipeline view', () => {
  test('cp.show(program) renders modules, signatures, demos and models', async ({ page, tmpPath }) => {
    await page.notebook.openByPath(`${tmpPath}/sidebar.ipynb`);
    await page.notebook.activate('sidebar.ipynb');
    await dismissNewsToast(page);
    await page.notebook.runCell(0);
    await page.notebook.runCell(3);
    const view = page.locator('.jp-compound-pipeline');
    await expect(view).toBeVisible();
    await expect(view.locator('.jp-compound-pipeline-head')).toContainText('RewriteThenAnswer');
    const cards = view.locator('.jp-compound-pipeline-module');
    await expect(cards).toHaveCount(2);
    await expect(cards.nth(0)).toHaveAttribute('data-predictor', 'rewrite');
    await expect(cards.nth(1)).toContainText('ChainOfThought');
    await expect(cards.nth(1)).toContainText('0 demos');
    await expect(cards.nth(1).locator('.jp-compound-pipeline-lm')).toContainText('local/tiny-llama');
    await view.screenshot({ path: `${SHOTS}/pipeline-view.png` });
  });
});

test.describe('Notebook 7', () => {
  test('the tree page loads the extension without errors', async ({ browser, baseURL }) => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('console', (msg: any) => msg.type() === 'error' && errors.push(msg.text()));
    page.on('pageerror', (error: any) => errors.push(String(error)));
    await page.goto(`${baseURL}/tree`);
    await expect(page.locator('.jp-DirListing')).toBeVisible({ timeout: 60000 });
    await expect(page.locator('.jp-DirListing-item').first()).toBeVisible(); // the page finished loading
    expect(errors.filter(e => e.toLowerCase().includes('compound'))).toEqual([]);
    await context.close();
  });

  test('a compound widget, the pipeline view and the sidebar work on the notebook page', async ({
    browser,
    tmpPath,
    baseURL
  }) => {
    // A plain page: Galata's `page` fixture waits for JupyterLab, which Notebook 7 is not.
    const context = await browser.newContext();
    const page = await context.newPage();
    const activated = page.waitForEvent('console', {
      predicate: (msg: any) => msg.text().includes('compound-jupyterlab is activated'),
      timeout: 60000
    });
    await page.goto(`${baseURL}/notebooks/${tmpPath}/notebook7.ipynb`);
    await activated;
    await expect(page.locator('.jp-Notebook')).toBeVisible({ timeout: 60000 });
    await dismissNewsToast(page);
    // Shift+Enter before the kernel is ready drops the execution: wait for an idle kernel first.
    await expect(page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').first()).toBeVisible({
      timeout: 60000
    });
    await page.locator('.jp-Cell .jp-InputPrompt').first().click();
    await page.keyboard.press('Shift+Enter');
    const bar = page.locator('.compound-progress');
    await expect(bar).toBeVisible({ timeout: 60000 });
    await page.keyboard.press('Shift+Enter');
    await page.keyboard.press('Shift+Enter');
    await expect(bar.locator('.compound-progress-label')).toHaveText('nb7 progress');
    await expect(bar.locator('.compound-progress-count')).toHaveText('1/4 (25%)', { timeout: 30000 });
    await expect(page.locator('.jp-compound-pipeline-module')).toHaveCount(1, { timeout: 30000 });
    await page.screenshot({ path: `${SHOTS}/notebook7-widget.png` });
    // The sidebar lives in Notebook 7's left area; its command opens it, and it follows this notebook's kernel.
    await page.evaluate(() => (window as any).jupyterapp.commands.execute('compound:show-sidebar'));
    const sidebar = page.locator('#compound-sidebar');
    await expect(sidebar).toBeVisible({ timeout: 30000 });
    await expect(sidebar.locator('.jp-compound-notebook')).toContainText('notebook7.ipynb');
    await expect(sidebar.locator('.jp-compound-device')).toBeVisible({ timeout: 30000 });
    await page.screenshot({ path: `${SHOTS}/notebook7-sidebar.png` });
    await context.close();
  });
});

test.describe('other frontends of the same kernel', () => {
  test('a console on the notebook kernel leaves the sidebar working', async ({ page, tmpPath }) => {
    await page.notebook.openByPath(`${tmpPath}/sidebar.ipynb`);
    await page.notebook.activate('sidebar.ipynb');
    await dismissNewsToast(page);
    // A second JupyterLab connection to the kernel (it does not handle comms) must not disturb the sidebar.
    // (A foreign frontend that closes the announcement comm is covered in extension/src/__tests__/channel.spec.ts.)
    const errors: string[] = [];
    page.on('console', (msg: any) => msg.type() === 'error' && errors.push(msg.text()));
    await page.evaluate(async () => {
      await (window as any).jupyterapp.commands.execute('notebook:create-console', { activate: false });
    });
    await expect(page.locator('.jp-CodeConsole')).toBeVisible();
    const sidebar = await openSidebar(page);
    // Two tabs are titled sidebar.ipynb now, so drive the notebook by clicking into it rather than by name.
    const notebook = page.locator('.jp-NotebookPanel');
    await expect(notebook.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]')).toBeVisible({
      timeout: 60000
    });
    await notebook.locator('.jp-Cell .jp-InputPrompt').first().click();
    await page.keyboard.press('Control+Enter');
    await expect(notebook.locator('.jp-Cell').first().locator('.jp-OutputArea')).toContainText('model loaded', {
      timeout: 60000
    });
    await expect(sidebar.locator('.jp-compound-model[data-model-name="tiny-llama"]')).toBeVisible();
    await expect(sidebar.locator('.jp-compound-model')).toContainText('requests');
    expect(errors.filter(e => e.toLowerCase().includes('comm'))).toEqual([]);
  });
});
