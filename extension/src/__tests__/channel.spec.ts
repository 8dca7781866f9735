/**
 * KernelChannel against a stand-in kernel connection that implements just the comm calls it uses
 * (a real kernel is exercised by tests/jupyter/test_kernel_comm.py and the Galata tests).
 */
import { KernelChannel } from '../channel';
import { COMM_TARGET } from '../tokens';
import { snapshot } from './fixtures';
import { StubKernel } from './stubs';

describe('KernelChannel', () => {
  it('shows the announced snapshot and opens a comm of its own', () => {
    const kernel = new StubKernel();
    const channel = new KernelChannel(kernel as any);
    const seen: any[] = [];
    channel.changed.connect((_, s) => seen.push(s));
    expect(Object.keys(kernel.targets)).toEqual([COMM_TARGET]);
    kernel.announce();
    expect(channel.snapshot?.models[0].name).toBe('tiny-llama');
    const [own] = kernel.own();
    expect(own.opened).toEqual([{ type: 'refresh', interval_s: 5 }]);
    own.onMsg({ content: { data: snapshot({ jobs: [] }) } });
    expect(seen.map(s => s.jobs.length)).toEqual([2, 0]);
  });

  it('ignores another frontend closing the announcement', () => {
    const kernel = new StubKernel();
    const channel = new KernelChannel(kernel as any);
    const announcement = kernel.announce();
    announcement.onClose({});
    expect(channel.isConnected).toBe(true);
    kernel.own()[0].onMsg({ content: { data: snapshot() } });
    expect(channel.snapshot).not.toBeNull();
  });

  it('connects when compound was loaded before the page (any compound comm is open)', async () => {
    const kernel = new StubKernel();
    kernel.kernelComms = { other: { target_name: COMM_TARGET } };
    const channel = new KernelChannel(kernel as any);
    expect(await channel.connect()).toBe(true);
    expect(kernel.own()[0].opened).toEqual([{ type: 'refresh', interval_s: 5 }]);
    expect(await channel.connect()).toBe(true);
    expect(kernel.own()).toHaveLength(1);
  });

  it('waits when compound is not imported yet', async () => {
    const kernel = new StubKernel();
    const channel = new KernelChannel(kernel as any);
    expect(await channel.connect()).toBe(false);
    expect(kernel.own()).toHaveLength(0);
    expect(() => channel.cancel('j')).toThrow('run `import compound`');
  });

  it('stays out of the way on a connection that does not handle comms', async () => {
    const kernel = new StubKernel();
    kernel.handleComms = false;
    kernel.kernelComms = { other: { target_name: COMM_TARGET } };
    const channel = new KernelChannel(kernel as any);
    expect(kernel.targets).toEqual({});
    expect(await channel.connect()).toBe(false);
    channel.dispose();
  });

  it('sends cancel requests and relays the replies', () => {
    const kernel = new StubKernel();
    const channel = new KernelChannel(kernel as any);
    kernel.announce();
    const [own] = kernel.own();
    const replies: any[] = [];
    channel.cancelReplied.connect((_, r) => replies.push(r));
    channel.cancel('job1');
    expect(own.sent).toEqual([{ type: 'cancel', job_id: 'job1' }]);
    own.onMsg({ content: { data: { type: 'cancelled', job_id: 'job1', ok: true, error: null } } });
    expect(replies).toEqual([{ type: 'cancelled', job_id: 'job1', ok: true, error: null }]);
  });

  it('empties on kernel restart and on the kernel closing our comm', () => {
    const kernel = new StubKernel();
    const channel = new KernelChannel(kernel as any);
    kernel.announce();
    kernel.statusChanged.emit('restarting');
    expect(channel.snapshot).toBeNull();
    expect(channel.isConnected).toBe(false);
    kernel.announce('after-restart');
    expect(channel.snapshot).not.toBeNull();
    kernel.own()[1].onClose({});
    expect(channel.snapshot).toBeNull();
  });

  it('closes its own comm and unregisters the target on dispose', () => {
    const kernel = new StubKernel();
    const channel = new KernelChannel(kernel as any);
    kernel.announce();
    channel.dispose();
    expect(kernel.own()[0].closed).toBe(true);
    expect(kernel.targets).toEqual({});
  });

  it('refreshes with its interval, which tells the kernel the page is alive', () => {
    const kernel = new StubKernel();
    const channel = new KernelChannel(kernel as any);
    expect(channel.refresh()).toBe(false); // not connected yet: nothing to send on
    kernel.announce();
    channel.intervalS = 12;
    expect(channel.refresh()).toBe(true);
    expect(kernel.own()[0].sent).toEqual([{ type: 'refresh', interval_s: 12 }]);
  });
});
