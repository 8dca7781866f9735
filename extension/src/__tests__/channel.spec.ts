/**
 * KernelChannel against a stand-in kernel connection that implements just the comm calls it uses
 * (a real kernel is exercised by tests/jupyter/test_kernel_comm.py and the Galata tests).
 */
import { Signal } from '@lumino/signaling';

import { KernelChannel } from '../channel';
import { COMM_TARGET } from '../tokens';
import { snapshot } from './fixtures';

class StubComm {
  constructor(readonly commId: string) {}
  sent: any[] = [];
  opened: any[] = [];
  closed = false;
  isDisposed = false;
  onMsg: (msg: any) => void = () => undefined;
  onClose: (msg: any) => void = () => undefined;
  open(data: any) {
    this.opened.push(data);
  }
  send(data: any) {
    this.sent.push(data);
  }
  close() {
    this.closed = true;
  }
  dispose() {
    this.isDisposed = true;
  }
}

class StubKernel {
  targets: { [name: string]: (comm: any, msg: any) => void } = {};
  comms = new Map<string, StubComm>();
  kernelComms: { [id: string]: { target_name: string } } = {};
  statusChanged = new Signal<this, string>(this);
  isDisposed = false;
  handleComms = true;
  registerCommTarget(name: string, cb: any) {
    this.targets[name] = cb;
  }
  removeCommTarget(name: string) {
    delete this.targets[name];
  }
  async requestCommInfo(content: { target_name: string }) {
    return { content: { status: 'ok', comms: this.kernelComms } };
  }
  createComm(target: string, id = `own-${this.comms.size}`) {
    const comm = new StubComm(id);
    this.comms.set(id, comm);
    return comm;
  }
  /** The kernel side runs `import compound`: it announces itself with a first snapshot. */
  announce(id = 'announce') {
    const comm = new StubComm(id);
    this.targets[COMM_TARGET](comm, { content: { data: snapshot() } });
    return comm;
  }
  own(): StubComm[] {
    return [...this.comms.values()];
  }
}

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
    expect(own.opened).toEqual([{ type: 'refresh' }]);
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
    expect(kernel.own()[0].opened).toEqual([{ type: 'refresh' }]);
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
});
