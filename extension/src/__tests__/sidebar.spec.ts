import { CompoundSidebar } from '../sidebar';
import { snapshot } from './fixtures';

function text(node: HTMLElement, selector: string): string[] {
  return Array.from(node.querySelectorAll(selector)).map(n => n.textContent ?? '');
}

describe('CompoundSidebar', () => {
  it('asks for a notebook, a kernel, then for compound', () => {
    const sidebar = new CompoundSidebar();
    expect(sidebar.node.textContent).toContain('Open a notebook');
    sidebar.render({ kind: 'no-kernel', notebook: 'a.ipynb' });
    expect(sidebar.node.textContent).toContain('no running kernel');
    sidebar.render({ kind: 'not-loaded', notebook: 'a.ipynb' });
    expect(sidebar.node.textContent).toContain('Run import compound or %load_ext compound');
  });

  it('shows models, engine statistics, adapters and device memory', () => {
    const sidebar = new CompoundSidebar();
    sidebar.render({ kind: 'live', notebook: 'a.ipynb', snapshot: snapshot() });
    const model = sidebar.node.querySelector('.jp-compound-model[data-model-name="tiny-llama"]')!;
    expect(model).not.toBeNull();
    expect(model.textContent).toContain('98.6K');
    expect(model.textContent).toContain('context256 tokens');
    expect(model.textContent).toContain('cpu · float32');
    expect(model.textContent).toContain('20.4 MiB');
    expect(model.textContent).toContain('3 waiting · 2 running');
    expect(model.textContent).toContain('836.9');
    // mean batch size of {1: 2, 4: 6} is 3.25
    expect(model.textContent).toContain('3.3');
    expect(text(sidebar.node, '.jp-compound-chip')).toEqual(['lora-qa', 'lora-rewrite']);
    expect(sidebar.node.querySelector('.jp-compound-device')!.textContent).toContain('467.4 MiB / 23.5 GiB');
  });

  it('lists jobs with progress, and Cancel only on running ones', () => {
    const sidebar = new CompoundSidebar();
    const cancelled: string[] = [];
    sidebar.onCancel = id => cancelled.push(id);
    sidebar.render({ kind: 'live', notebook: 'a.ipynb', snapshot: snapshot() });
    const running = sidebar.node.querySelector('.jp-compound-job[data-job-id="job1"]')!;
    expect(running.querySelector('[role=progressbar]')!.getAttribute('aria-valuenow')).toBe('40');
    expect(running.textContent).toContain('trial 4/10');
    expect(sidebar.node.querySelector('.jp-compound-job[data-job-id="job0"] button')).toBeNull();

    const button = running.querySelector('button.jp-compound-cancel') as HTMLButtonElement;
    button.click();
    expect(cancelled).toEqual(['job1']);
    expect(button.disabled).toBe(true);
    // A snapshot that still says "running" keeps the button in its Stopping… state.
    sidebar.render({ kind: 'live', notebook: 'a.ipynb', snapshot: snapshot() });
    const again = sidebar.node.querySelector('.jp-compound-job[data-job-id="job1"] button') as HTMLButtonElement;
    expect(again).toBe(button); // the same node across redraws, so a click during a redraw still lands
    expect(again.disabled).toBe(true);
    expect(again.textContent).toBe('Stopping…');
  });

  it('drops the Cancel button once the job is stopped', () => {
    const sidebar = new CompoundSidebar();
    const s = snapshot();
    s.jobs[0] = { ...s.jobs[0], status: 'stopped' };
    sidebar.render({ kind: 'live', notebook: 'a.ipynb', snapshot: s });
    const job = sidebar.node.querySelector('.jp-compound-job[data-job-id="job1"]')!;
    expect(job.getAttribute('data-status')).toBe('stopped');
    expect(job.querySelector('button')).toBeNull();
    expect(sidebar.node.textContent).toContain('Jobs (0 running)');
  });

  it('shows a GPU when the kernel uses CUDA', () => {
    const sidebar = new CompoundSidebar();
    const s = snapshot({
      device: { kind: 'cuda', name: 'NVIDIA H100', used_bytes: 8 * 1024 ** 3, total_bytes: 80 * 1024 ** 3 }
    });
    sidebar.render({ kind: 'live', notebook: 'a.ipynb', snapshot: s });
    const device = sidebar.node.querySelector('.jp-compound-device')!;
    expect(device.textContent).toContain('GPU · NVIDIA H100');
    expect(device.textContent).toContain('8.0 GiB / 80.0 GiB');
  });

  it('keeps error notes across redraws until each is dismissed', () => {
    const sidebar = new CompoundSidebar();
    sidebar.render({ kind: 'live', notebook: 'a.ipynb', snapshot: snapshot() });
    sidebar.showError('Cancel failed: no job with id x');
    sidebar.showError('Cancel failed: kernel busy');
    for (let i = 0; i < 3; i++) {
      sidebar.render({ kind: 'live', notebook: 'a.ipynb', snapshot: snapshot() }); // snapshots keep arriving
    }
    expect(text(sidebar.node, '.jp-compound-error').map(t => t.replace('✕', ''))).toEqual([
      'Cancel failed: no job with id x',
      'Cancel failed: kernel busy'
    ]);
    (sidebar.node.querySelector('.jp-compound-error button') as HTMLButtonElement).click();
    expect(sidebar.errors).toEqual(['Cancel failed: kernel busy']);
    sidebar.render({ kind: 'no-notebook' });
    expect(text(sidebar.node, '.jp-compound-error').map(t => t.replace('✕', ''))).toEqual([
      'Cancel failed: kernel busy'
    ]);
  });

  it('puts every string through the translator', () => {
    const seen: string[] = [];
    const trans = { __: (s: string, ...args: any[]) => (seen.push(s), `«${s}»`) } as any;
    const sidebar = new CompoundSidebar(trans);
    sidebar.render({ kind: 'live', notebook: 'a.ipynb', snapshot: snapshot() });
    expect(seen).toEqual(expect.arrayContaining(['Compound', 'Models (%1)', 'Jobs (%1 running)', 'context', 'Cancel']));
    expect(sidebar.node.querySelector('.jp-compound-title')!.textContent).toBe('«Compound»');
  });
});
