/**
 * The "Compound" sidebar view: draws one kernel snapshot (models, engine statistics, adapters, jobs,
 * device memory). It knows nothing about kernels; `KernelChannel` (channel.ts) feeds it and receives
 * its Cancel clicks through `onCancel`.
 */
import { Widget } from '@lumino/widgets';

import { formatBytes, formatCount, formatDuration, histogramMean } from './format';
import {
  IDeviceMemory,
  IJobSnapshot,
  IKernelSnapshot,
  IModelSnapshot,
  SIDEBAR_ID
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

export function renderDevice(device: IDeviceMemory): HTMLElement {
  const node = el('section', 'jp-compound-device');
  node.appendChild(el('h3', '', device.kind === 'cuda' ? `GPU · ${device.name}` : 'CPU · process memory'));
  const total = device.total_bytes;
  const label =
    total && total > 0
      ? `${formatBytes(device.used_bytes)} / ${formatBytes(total)}`
      : formatBytes(device.used_bytes);
  keyValue(node, device.kind === 'cuda' ? 'used' : 'resident', label);
  node.appendChild(meter(total ? device.used_bytes / total : 0, 'jp-compound-device-meter'));
  return node;
}

export function renderModel(model: IModelSnapshot): HTMLElement {
  const node = el('div', 'jp-compound-model');
  node.dataset.modelName = model.name;
  const title = el('div', 'jp-compound-model-name', model.name);
  title.title = model.model_id;
  node.appendChild(title);
  keyValue(node, 'parameters', formatCount(model.params));
  keyValue(node, 'device', `${model.device} · ${model.dtype}`);
  keyValue(node, 'memory', formatBytes(model.memory_bytes));
  const stats = model.stats || {};
  const engine = el('div', 'jp-compound-engine');
  keyValue(engine, 'queue', `${stats.queue_depth ?? 0} waiting · ${stats.requests_running ?? 0} running`);
  keyValue(engine, 'batch size', histogramMean(stats.batch_size_hist).toFixed(1));
  keyValue(engine, 'tok/s', (stats.tokens_per_s ?? 0).toFixed(1));
  keyValue(engine, 'requests', `${stats.requests_total ?? 0}${stats.errors ? ` · ${stats.errors} errors` : ''}`);
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

export function renderJob(job: IJobSnapshot, cancelButton: HTMLButtonElement | null): HTMLElement {
  const node = el('div', `jp-compound-job jp-mod-${job.status}`);
  node.dataset.jobId = job.id;
  node.dataset.status = job.status;
  const head = el('div', 'jp-compound-job-head');
  head.appendChild(el('span', 'jp-compound-job-name', job.name));
  head.appendChild(el('span', 'jp-compound-job-status', job.status));
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

  constructor() {
    super();
    this.id = SIDEBAR_ID;
    this.addClass('jp-compound-sidebar');
    this.title.caption = 'Compound: models and jobs of this notebook\'s kernel';
    this.render({ kind: 'no-notebook' });
  }

  get state(): SidebarState {
    return this._state;
  }

  /** Remember a cancel until the kernel reports the job stopping (a snapshot may arrive in between). */
  markCancelling(jobId: string): void {
    this._pending.add(jobId);
  }

  showError(message: string): void {
    const note = el('div', 'jp-compound-error', message);
    this.node.appendChild(note);
  }

  render(state: SidebarState): void {
    this._state = state;
    const root = this.node;
    root.textContent = '';
    root.appendChild(el('h2', 'jp-compound-title', 'Compound'));
    if (state.kind === 'no-notebook') {
      root.appendChild(el('p', 'jp-compound-empty', 'Open a notebook to see its kernel\'s models and jobs.'));
      return;
    }
    const notebook = el('div', 'jp-compound-notebook', state.notebook.split('/').pop());
    notebook.title = state.notebook;
    root.appendChild(notebook);
    if (state.kind === 'no-kernel') {
      root.appendChild(el('p', 'jp-compound-empty', 'This notebook has no running kernel.'));
      return;
    }
    if (state.kind === 'not-loaded') {
      const p = el('p', 'jp-compound-empty');
      p.append('compound is not loaded in this kernel. Run ');
      p.appendChild(el('code', '', 'import compound'));
      p.append(' or ');
      p.appendChild(el('code', '', '%load_ext compound'));
      p.append('.');
      root.appendChild(p);
      return;
    }
    const { snapshot } = state;
    root.appendChild(renderDevice(snapshot.device));

    const models = el('section', 'jp-compound-models');
    models.appendChild(el('h3', '', `Models (${snapshot.models.length})`));
    if (snapshot.models.length === 0) {
      models.appendChild(el('p', 'jp-compound-empty', 'No model loaded (cp.LM(...) loads one).'));
    }
    for (const model of snapshot.models) {
      models.appendChild(renderModel(model));
    }
    root.appendChild(models);

    const jobs = el('section', 'jp-compound-jobs');
    const running = snapshot.jobs.filter(j => j.status === 'running').length;
    jobs.appendChild(el('h3', '', `Jobs (${running} running)`));
    if (snapshot.jobs.length === 0) {
      jobs.appendChild(el('p', 'jp-compound-empty', 'No background job.'));
    }
    // Forget pending cancels of jobs that are no longer running.
    for (const id of [...this._pending]) {
      if (!snapshot.jobs.some(j => j.id === id && j.status === 'running')) {
        this._pending.delete(id);
      }
    }
    for (const job of snapshot.jobs) {
      jobs.appendChild(renderJob(job, this._cancelButton(job)));
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
      button.title = `Stop ${job.name}; it keeps the best result so far`;
      const b = button;
      button.addEventListener('click', () => {
        this.markCancelling(job.id);
        b.disabled = true;
        b.textContent = 'Stopping…';
        this.onCancel(job.id);
      });
      this._buttons.set(job.id, button);
    }
    const asked = this._pending.has(job.id) || job.status === 'stopping';
    button.textContent = asked ? 'Stopping…' : 'Cancel';
    button.disabled = asked;
    return button;
  }

  private _buttons = new Map<string, HTMLButtonElement>();
  private _state: SidebarState = { kind: 'no-notebook' };
  private _pending = new Set<string>();
}
