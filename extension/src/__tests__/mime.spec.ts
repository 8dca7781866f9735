import { MimeModel } from '@jupyterlab/rendermime';

import { lmLabel, pipelineRendererFactory } from '../mime';
import { PIPELINE_MIME_TYPE } from '../tokens';
import { pipeline } from './fixtures';

describe('pipeline view', () => {
  it('is registered for the compound pipeline MIME type', () => {
    expect(pipelineRendererFactory.mimeTypes).toEqual([PIPELINE_MIME_TYPE]);
    expect(pipelineRendererFactory.safe).toBe(true);
  });

  it('draws one card per predictor with signature fields, demos and model', async () => {
    const renderer = pipelineRendererFactory.createRenderer({
      mimeType: PIPELINE_MIME_TYPE,
      sanitizer: { sanitize: (s: string) => s },
      resolver: null,
      linkHandler: null,
      latexTypesetter: null
    } as any);
    await renderer.renderModel(new MimeModel({ data: { [PIPELINE_MIME_TYPE]: pipeline as any } }));
    const node = renderer.node;
    expect(node.querySelector('.jp-compound-pipeline-head')!.textContent).toContain(
      'RewriteThenAnswer 2 predictors · ChatAdapter'
    );
    const cards = node.querySelectorAll('.jp-compound-pipeline-module');
    expect(Array.from(cards).map(c => (c as HTMLElement).dataset.predictor)).toEqual([
      'rewrite',
      'answer.predict'
    ]);
    expect(node.querySelectorAll('.jp-compound-pipeline-arrow')).toHaveLength(1);
    const answer = cards[1];
    expect(answer.textContent).toContain('ChainOfThought');
    expect(answer.textContent).toContain('3 demos');
    expect(Array.from(answer.querySelectorAll('.jp-compound-pipeline-field')).map(f => f.textContent)).toEqual([
      'question',
      'context',
      'reasoning',
      'answer'
    ]);
    expect(answer.querySelector('.jp-compound-pipeline-lm')!.textContent).toContain('local/tiny@lora-qa');
    expect(answer.querySelector('.jp-compound-pipeline-lm')!.getAttribute('title')).toBe(
      'LM assigned to this predictor'
    );
  });

  it('says what to do with malformed data', async () => {
    const renderer = pipelineRendererFactory.createRenderer({ mimeType: PIPELINE_MIME_TYPE } as any);
    await renderer.renderModel(new MimeModel({ data: { [PIPELINE_MIME_TYPE]: { program: 'x' } } }));
    expect(renderer.node.textContent).toContain('re-run cp.show(program)');
  });

  it('labels models and adapters', () => {
    expect(lmLabel(null)).toBe('no LM configured');
    expect(lmLabel({ model: 'local/a', base: 'local/a', adapter: 'lora' })).toBe('local/a @ lora');
    expect(lmLabel({ model: 'local/a@lora', base: 'local/a', adapter: 'lora' })).toBe('local/a@lora');
  });
});
