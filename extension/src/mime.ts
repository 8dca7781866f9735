/**
 * The pipeline view: renders `cp.show(program)` (PIPELINE_MIME_TYPE) as a column of module cards joined
 * by arrows: each predictor's name, module type, signature, demo count and the model/adapter it runs on.
 */
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { IPipeline, IPipelineLM, IPipelineModule, PIPELINE_MIME_TYPE } from './tokens';

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

export function lmLabel(lm: IPipelineLM | null): string {
  if (!lm) {
    return 'no LM configured';
  }
  return lm.adapter && !lm.model.includes('@') ? `${lm.model} @ ${lm.adapter}` : lm.model;
}

function renderFields(label: string, names: string[]): HTMLElement {
  const row = el('div', 'jp-compound-pipeline-fields');
  row.appendChild(el('span', 'jp-compound-pipeline-fields-label', label));
  for (const name of names) {
    row.appendChild(el('code', 'jp-compound-pipeline-field', name));
  }
  return row;
}

export function renderModule(module: IPipelineModule): HTMLElement {
  const card = el('div', 'jp-compound-pipeline-module');
  card.dataset.predictor = module.name;
  const head = el('div', 'jp-compound-pipeline-module-head');
  head.appendChild(el('span', 'jp-compound-pipeline-module-name', module.name));
  head.appendChild(el('span', 'jp-compound-pipeline-badge', module.type));
  const demos = el('span', 'jp-compound-pipeline-badge jp-compound-pipeline-demos', `${module.demos} demos`);
  head.appendChild(demos);
  card.appendChild(head);
  card.appendChild(renderFields('in', module.inputs.map(f => f.name)));
  card.appendChild(renderFields('out', module.outputs.map(f => f.name)));
  const source = module.lm_source === 'default' ? ' · default LM' : '';
  const lm = el('div', 'jp-compound-pipeline-lm', `${lmLabel(module.lm)}${source}`);
  lm.title =
    module.lm_source === 'predictor'
      ? 'LM assigned to this predictor'
      : module.lm_source === 'default'
      ? 'the configured default LM (dspy.configure(lm=...))'
      : 'set one with dspy.configure(lm=...) or predictor.lm = ...';
  if (module.lm?.adapter) {
    lm.appendChild(el('span', 'jp-compound-chip', module.lm.adapter));
  }
  card.appendChild(lm);
  if (module.instructions) {
    const instructions = el('details', 'jp-compound-pipeline-instructions');
    instructions.appendChild(el('summary', '', 'instructions'));
    instructions.appendChild(el('p', '', module.instructions));
    card.appendChild(instructions);
  }
  return card;
}

export function renderPipeline(pipeline: IPipeline): HTMLElement {
  const root = el('div', 'jp-compound-pipeline-body');
  const head = el('div', 'jp-compound-pipeline-head');
  head.appendChild(el('b', '', pipeline.program));
  const n = pipeline.modules.length;
  head.appendChild(
    el('span', 'jp-compound-pipeline-summary', ` ${n} predictor${n === 1 ? '' : 's'} · ${pipeline.dspy_adapter}`)
  );
  root.appendChild(head);
  pipeline.modules.forEach((module, i) => {
    if (i > 0) {
      root.appendChild(el('div', 'jp-compound-pipeline-arrow', '↓'));
    }
    root.appendChild(renderModule(module));
  });
  return root;
}

/** A rendermime renderer for PIPELINE_MIME_TYPE. */
export class PipelineRenderer extends Widget implements IRenderMime.IRenderer {
  constructor(options: IRenderMime.IRendererOptions) {
    super();
    this._mimeType = options.mimeType;
    this.addClass('jp-compound-pipeline');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const data = model.data[this._mimeType] as unknown as IPipeline;
    this.node.textContent = '';
    if (!data || !Array.isArray(data.modules)) {
      this.node.appendChild(
        el('pre', 'jp-compound-error', 'compound: this pipeline output is malformed; re-run cp.show(program).')
      );
      return;
    }
    this.node.appendChild(renderPipeline(data));
  }

  private _mimeType: string;
}

export const pipelineRendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [PIPELINE_MIME_TYPE],
  defaultRank: 50,
  createRenderer: options => new PipelineRenderer(options)
};
