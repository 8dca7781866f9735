import { IKernelSnapshot, IPipeline } from '../tokens';

export function snapshot(overrides: Partial<IKernelSnapshot> = {}): IKernelSnapshot {
  return {
    type: 'snapshot',
    models: [
      {
        name: 'tiny-llama',
        model_id: 'memory:tiny-llama',
        params: 98624,
        device: 'cpu',
        dtype: 'float32',
        memory_bytes: 21382464,
        adapters: ['lora-qa', 'lora-rewrite'],
        context_tokens: 256,
        stats: {
          requests_total: 12,
          requests_running: 2,
          queue_depth: 3,
          batch_size_hist: { '1': 2, '4': 6 },
          tokens_per_s: 836.9,
          errors: 0
        }
      }
    ],
    jobs: [
      {
        id: 'job1',
        name: 'optimize qa',
        kind: 'optimize',
        status: 'running',
        progress: 0.4,
        detail: 'trial 4/10',
        elapsed_s: 12.5
      },
      {
        id: 'job0',
        name: 'warm-up',
        kind: 'task',
        status: 'done',
        progress: 1,
        detail: '',
        elapsed_s: 1
      }
    ],
    device: { kind: 'cpu', name: 'process RSS', used_bytes: 490110976, total_bytes: 25276514304 },
    pid: 7468,
    time: 1795665180.4,
    ...overrides
  };
}

export const pipeline: IPipeline = {
  program: 'RewriteThenAnswer',
  dspy_adapter: 'ChatAdapter',
  default_lm: { model: 'local/base', base: 'local/base', adapter: null },
  modules: [
    {
      name: 'rewrite',
      type: 'Predict',
      signature: 'question -> query',
      instructions: 'Rewrite the question.',
      inputs: [{ name: 'question', type: 'str', desc: '' }],
      outputs: [{ name: 'query', type: 'str', desc: '' }],
      demos: 0,
      lm: { model: 'local/base', base: 'local/base', adapter: null },
      lm_source: 'default'
    },
    {
      name: 'answer.predict',
      type: 'ChainOfThought',
      signature: 'question, context -> reasoning, answer',
      instructions: '',
      inputs: [
        { name: 'question', type: 'str', desc: '' },
        { name: 'context', type: 'list', desc: '' }
      ],
      outputs: [
        { name: 'reasoning', type: 'str', desc: '' },
        { name: 'answer', type: 'str', desc: '' }
      ],
      demos: 3,
      lm: { model: 'local/tiny@lora-qa', base: 'local/tiny', adapter: 'lora-qa' },
      lm_source: 'predictor'
    }
  ]
};
