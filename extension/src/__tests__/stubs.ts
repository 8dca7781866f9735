/**
 * Stand-ins for a kernel connection and notebook panels that implement just what channel.ts and controller.ts use
 * (a real kernel is exercised by tests/jupyter/test_kernel_comm.py and the Galata tests).
 */
import { Signal } from '@lumino/signaling';

import { COMM_TARGET } from '../tokens';
import { snapshot } from './fixtures';

export class StubComm {
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

export class StubKernel {
  targets: { [name: string]: (comm: any, msg: any) => void } = {};
  comms = new Map<string, StubComm>();
  kernelComms: { [id: string]: { target_name: string } } = {};
  statusChanged = new Signal<this, string>(this);
  isDisposed = false;
  handleComms = true;
  constructor(readonly id = 'kernel-1') {}
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


export class StubPanel {
  constructor(readonly path: string, kernel: StubKernel | null) {
    this.sessionContext.session = kernel ? { kernel } : null;
  }
  isDisposed = false;
  disposed = new Signal<this, void>(this);
  context = { path: this.path };
  sessionContext: any = {
    session: null,
    kernelChanged: new Signal<any, any>({}),
    ready: Promise.resolve()
  };
  /** The kernel of this panel's session changes (a restart to another kernel, a kernel switch). */
  switchKernel(kernel: StubKernel | null) {
    this.sessionContext.session = kernel ? { kernel } : null;
    this.sessionContext.kernelChanged.emit({});
  }
  dispose() {
    this.isDisposed = true;
    this.disposed.emit();
  }
}

export class StubTracker {
  widgets: StubPanel[] = [];
  currentWidget: StubPanel | null = null;
  widgetAdded = new Signal<this, StubPanel>(this);
  currentChanged = new Signal<this, StubPanel | null>(this);
  forEach(fn: (panel: StubPanel) => void) {
    this.widgets.forEach(fn);
  }
  add(panel: StubPanel) {
    this.widgets.push(panel);
    this.widgetAdded.emit(panel);
  }
  activate(panel: StubPanel | null) {
    this.currentWidget = panel;
    this.currentChanged.emit(panel);
  }
}

/** Let promise callbacks (session.ready.then(...), comm_info replies) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await Promise.resolve();
  }
}
