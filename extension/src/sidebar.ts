/**
 * The "Compound" sidebar view: draws one kernel snapshot (models with their context size, engine statistics,
 * adapters, jobs, device memory) and the errors the user has not dismissed yet. It knows nothing about kernels;
 * `SidebarController` (controller.ts) feeds it and receives its Cancel clicks through `onCancel`.
 */
import { nullTranslator, TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { formatBytes, formatCount, formatDuration, histogramMean } from './format';
import {
  IDeviceMemory,
  IJobSnapshot,
  IKernelSnapshot,
  IModelSnapshot,
  SIDEBAR_ID,
  TRANSLATION_DOMAIN
} from './tokens';

/** What the sidebar is looking at. */
export type SidebarState =
  | { kind: 'no-notebook' }
  | { kind: 'no-kernel'; notebook: string }
  | { kind: 'not-loaded'; notebook: string }
  | { kind: 'live'; notebook: string; snapshot: IKernelSnapshot };

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

function meter(fraction: number | null, className: string): HTMLElement {
  const outer = el('div', `jp-compound-meter ${className}`);
  const inner = el('div', 'jp-compound-meter-fill');
  if (fraction === null) {
    outer.classList.add('jp-mod-indeterminate');
  } else {
    inner.style.width = `${Math.max(0, Math.min(1, fraction)) * 100}%`;
  }
  outer.setAttribute('role', 'progressbar');
  if (fraction !== null) {
    outer.setAttribute('aria-valuenow', `${Math.round(fraction * 100)}`);
  }
  outer.appendChild(inner);
  return outer;
}

function keyValue(parent: HTMLElement, key: string, value: string): void {
  const row = el('div', 'jp-compound-kv');
  row.appendChild(el('span', 'jp-compound-key', key));
  row.appendChild(el('span', 'jp-compound-value', value));
  parent.appendChild(row);
}

const defaultTrans = nullTranslator.load(TRANSLATION_DOMAIN);

export function renderDevice(device: IDeviceMemory, trans: TranslationBundle = defaultTrans): HTMLElement {
  const node = el('section', 'jp-compound-device');
  node.appendChild(
    el('h3', '', device.kind === 'cuda' ? trans.__('GPU · %1', device.name) : trans.__('CPU · process memory'))
  );
  const total = device.total_bytes;
  const label =
    total && total > 0
      ? `${formatBytes(device.used_bytes)} / ${formatBytes(total)}`
      : formatBytes(device.used_bytes);
  keyValue(node, device.kind === 'cuda' ? trans.__('used') : trans.__('resident'), label);
  node.appendChild(meter(total ? device.used_bytes / total : 0, 'jp-compound-device-meter'));
  return node;
}

export function renderModel(model: IModelSnapshot, trans: TranslationBundle = defaultTrans): HTMLElement {
  const node = el('div', 'jp-compound-model');
  node.dataset.modelName = model.name;
  const title = el('div', 'jp-compound-model-name', model.name);
  title.title = model.model_id;
  node.appendChild(title);
  keyValue(node, trans.__('parameters'), formatCount(model.params));
  if (model.context_tokens) {
    keyValue(node, trans.__('context'), trans.__('%1 tokens', formatCount(model.context_tokens)));
  }
  keyValue(node, trans.__('device'), `${model.device} · ${model.dtype}`);
  keyValue(node, trans.__('memory'), formatBytes(model.memory_bytes));
  const stats = model.stats || {};
  const engine = el('div', 'jp-compound-engine');
  keyValue(
    engine,
    trans.__('queue'),
    trans.__('%1 waiting · %2 running', stats.queue_depth ?? 0, stats.requests_running ?? 0)
  );
  keyValue(engine, trans.__('batch size'), histogramMean(stats.batch_size_hist).toFixed(1));
  keyValue(engine, trans.__('tok/s'), (stats.tokens_per_s ?? 0).toFixed(1));
  const errors = stats.errors ? trans.__(' · %1 errors', stats.errors) : '';
  keyValue(engine, trans.__('requests'), `${stats.requests_total ?? 0}${errors}`);
  node.appendChild(engine);
  if (model.adapters && model.adapters.length > 0) {
    const adapters = el('div', 'jp-compound-adapters');
    for (const name of model.adapters) {
      adapters.appendChild(el('span', 'jp-compound-chip', name));
    }
    node.appendChild(adapters);
  }
  return node;
}

export function renderJob(
  job: IJobSnapshot,
  cancelButton: HTMLButtonElement | null,
  trans: TranslationBundle = defaultTrans
): HTMLElement {
  const node = el('div', `jp-compound-job jp-mod-${job.status}`);
  node.dataset.jobId = job.id;
  node.dataset.status = job.status;
  const head = el('div', 'jp-compound-job-head');
  head.appendChild(el('span', 'jp-compound-job-name', job.name));
  head.appendChild(el('span', 'jp-compound-job-status', trans.__(job.status)));
  node.appendChild(head);
  const running = job.status === 'running';
  node.appendChild(meter(running ? job.progress : 1, 'jp-compound-job-meter'));
  const facts = [job.kind, formatDuration(job.elapsed_s), job.detail ?? ''].filter(s => s);
  node.appendChild(el('div', 'jp-compound-job-detail', facts.join(' · ')));
  if (cancelButton) {
    node.appendChild(cancelButton);
  }
  return node;
}

/** The sidebar panel. Call `render(state)` whenever the state changes. */
export class CompoundSidebar extends Widget {
  /** Called with a job id when the user presses Cancel. */
  onCancel: (jobId: string) => void = () => undefined;

  constructor(trans: TranslationBundle = defaultTrans) {
    super();
    this._trans = trans;
    this.id = SIDEBAR_ID;
    this.addClass('jp-compound-sidebar');
    this.title.caption = trans.__("Compound: models and jobs of this notebook's kernel");
    this.render({ kind: 'no-notebook' });
  }

  get state(): SidebarState {
    return this._state;
  }

  /** Remember a cancel until the kernel reports the job stopping (a snapshot may arrive in between). */
  markCancelling(jobId: string): void {
    this._pending.add(jobId);
  }

  /** The error notes on show, oldest first; each stays until its ✕ is clicked. */
  get errors(): string[] {
    return [...this._errors];
  }

  /** Show an error note that survives redraws until the user dismisses it. */
  showError(message: string): void {
    this._errors.push(message);
    this.render(this._state);
  }

  dismissError(index: number): void {
    this._errors.splice(index, 1);
    this.render(this._state);
  }

  render(state: SidebarState): void {
    const trans = this._trans;
    this._state = state;
    const root = this.node;
    root.textContent = '';
    root.appendChild(el('h2', 'jp-compound-title', trans.__('Compound')));
    this._errors.forEach((message, index) => {
      const note = el('div', 'jp-compound-error', message);
      const dismiss = el('button', 'jp-compound-dismiss jp-Button jp-mod-minimal', '✕');
      dismiss.title = trans.__('Dismiss');
      dismiss.addEventListener('click', () => this.dismissError(index));
      note.appendChild(dismiss);
      root.appendChild(note);
    });
    if (state.kind === 'no-notebook') {
      root.appendChild(el('p', 'jp-compound-empty', trans.__("Open a notebook to see its kernel's models and jobs.")));
      return;
    }
    const notebook = el('div', 'jp-compound-notebook', state.notebook.split('/').pop());
    notebook.title = state.notebook;
    root.appendChild(notebook);
    if (state.kind === 'no-kernel') {
      root.appendChild(el('p', 'jp-compound-empty', trans.__('This notebook has no running kernel.')));
      return;
    }
    if (state.kind === 'not-loaded') {
      const p = el('p', 'jp-compound-empty');
      // The translated sentence with markers where the two code snippets go.
      const sentence = trans.__('compound is not loaded in this kernel. Run %1 or %2.', '\u0001', '\u0002');
      const [before, between, after] = sentence.split(/[\u0001\u0002]/);
      p.append(before);
      p.appendChild(el('code', '', 'import compound'));
      p.append(between);
      p.appendChild(el('code', '', '%load_ext compound'));
      p.append(after);
      root.appendChild(p);
      return;
    }
    const { snapshot } = state;
    root.appendChild(renderDevice(snapshot.device, trans));

    const models = el('section', 'jp-compound-models');
    models.appendChild(el('h3', '', trans.__('Models (%1)', snapshot.models.length)));
    if (snapshot.models.length === 0) {
      models.appendChild(el('p', 'jp-compound-empty', trans.__('No model loaded (cp.LM(...) loads one).')));
    }
    for (const model of snapshot.models) {
      models.appendChild(renderModel(model, trans));
    }
    root.appendChild(models);

    const jobs = el('section', 'jp-compound-jobs');
    const running = snapshot.jobs.filter(j => j.status === 'running').length;
    jobs.appendChild(el('h3', '', trans.__('Jobs (%1 running)', running)));
    if (snapshot.jobs.length === 0) {
      jobs.appendChild(el('p', 'jp-compound-empty', trans.__('No background job.')));
    }
    // Forget pending cancels of jobs that are no longer running.
    for (const id of [...this._pending]) {
      if (!snapshot.jobs.some(j => j.id === id && j.status === 'running')) {
        this._pending.delete(id);
      }
    }
    for (const job of snapshot.jobs) {
      jobs.appendChild(renderJob(job, this._cancelButton(job), trans));
    }
    for (const id of [...this._buttons.keys()]) {
      if (!snapshot.jobs.some(j => j.id === id && (j.status === 'running' || j.status === 'stopping'))) {
        this._buttons.delete(id);
      }
    }
    root.appendChild(jobs);
  }

  /**
   * The Cancel button of a running job. Snapshots arrive several times a second and redraw the panel, so
   * each job keeps one button node across redraws: a click that straddles a redraw still lands.
   */
  private _cancelButton(job: IJobSnapshot): HTMLButtonElement | null {
    if (job.status !== 'running' && job.status !== 'stopping') {
      return null;
    }
    let button = this._buttons.get(job.id);
    if (!button) {
      button = el('button', 'jp-compound-cancel jp-Button jp-mod-styled jp-mod-warn');
      button.title = this._trans.__('Stop %1; it keeps the best result so far', job.name);
      const b = button;
      button.addEventListener('click', () => {
        this.markCancelling(job.id);
        b.disabled = true;
        b.textContent = this._trans.__('Stopping…');
        this.onCancel(job.id);
      });
      this._buttons.set(job.id, button);
    }
    const asked = this._pending.has(job.id) || job.status === 'stopping';
    button.textContent = asked ? this._trans.__('Stopping…') : this._trans.__('Cancel');
    button.disabled = asked;
    return button;
  }

  private _trans: TranslationBundle;
  private _errors: string[] = [];
  private _buttons = new Map<string, HTMLButtonElement>();
  private _state: SidebarState = { kind: 'no-notebook' };
  private _pending = new Set<string>();
}
