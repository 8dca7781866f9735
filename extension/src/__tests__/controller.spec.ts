/**
 * SidebarController against stand-in notebooks and kernel connections: one channel per kernel, shared by panels;
 * panels and controllers that go away bind nothing; the refresh timer is the page's heartbeat.
 */
import { SidebarController } from '../controller';
import { CompoundSidebar } from '../sidebar';
import { snapshot } from './fixtures';
import { settle, StubKernel, StubPanel, StubTracker } from './stubs';

function setup(...panels: StubPanel[]) {
  const tracker = new StubTracker();
  panels.forEach(p => tracker.widgets.push(p));
  const sidebar = new CompoundSidebar();
  const controller = new SidebarController(sidebar, tracker as any);
  return { tracker, sidebar, controller };
}

afterEach(() => jest.useRealTimers());

describe('SidebarController', () => {
  it('asks for a notebook, then shows the active notebook kernel as it goes live', async () => {
    const kernel = new StubKernel();
    const panel = new StubPanel('a.ipynb', kernel);
    const { tracker, sidebar, controller } = setup();
    expect(sidebar.state.kind).toBe('no-notebook');
    tracker.add(panel);
    tracker.activate(panel);
    await settle();
    expect(sidebar.state).toEqual({ kind: 'not-loaded', notebook: 'a.ipynb' });
    kernel.announce();
    expect(sidebar.state.kind).toBe('live');
    expect(controller.current).toBe(controller.channelOf(panel as any));
    controller.dispose();
  });

  it('shares one channel between notebooks on the same kernel', async () => {
    const kernel = new StubKernel('shared');
    const second = new StubKernel('shared'); // the second notebook's connection: JupyterLab gives it no comms
    second.handleComms = false;
    const a = new StubPanel('a.ipynb', kernel);
    const b = new StubPanel('b.ipynb', second);
    const { tracker, sidebar, controller } = setup(a, b);
    await settle();
    expect(controller.channelCount).toBe(1);
    kernel.announce();
    tracker.activate(b);
    expect(sidebar.state.kind).toBe('live'); // the second notebook sees the kernel the first one connected to
    expect(kernel.own()).toHaveLength(1); // one comm per kernel, not per panel
    controller.dispose();
  });

  it('keeps the channel while another notebook uses the kernel and closes it with the last one', async () => {
    const kernel = new StubKernel('k');
    const other = new StubKernel('k');
    other.handleComms = false;
    const a = new StubPanel('a.ipynb', kernel);
    const b = new StubPanel('b.ipynb', other);
    const { tracker, controller } = setup(a, b);
    await settle();
    kernel.announce();
    const channel = controller.channelOf(b as any)!;
    b.dispose();
    expect(controller.channelOf(a as any)).toBe(channel);
    expect(kernel.own()[0].closed).toBe(false);
    tracker.activate(a);
    a.dispose();
    expect(controller.channelCount).toBe(0);
    expect(kernel.own()[0].closed).toBe(true); // the kernel stops feeding a page that no longer shows it
    controller.dispose();
  });

  it('moves the channel to a remaining connection when the panel that owned it closes', async () => {
    const owner = new StubKernel('k');
    const remaining = new StubKernel('k');
    const a = new StubPanel('a.ipynb', owner);
    const b = new StubPanel('b.ipynb', remaining);
    const { controller } = setup(a, b);
    await settle();
    expect(controller.channelOf(b as any)!.kernel).toBe(owner);
    a.dispose();
    expect(controller.channelOf(b as any)!.kernel).toBe(remaining);
    controller.dispose();
  });

  it('follows a kernel change of a notebook', async () => {
    const first = new StubKernel('first');
    const second = new StubKernel('second');
    const panel = new StubPanel('a.ipynb', first);
    const { tracker, sidebar, controller } = setup(panel);
    tracker.activate(panel);
    await settle();
    first.announce();
    expect(sidebar.state.kind).toBe('live');
    panel.switchKernel(second);
    expect(controller.channelOf(panel as any)!.kernel).toBe(second);
    expect(sidebar.state.kind).toBe('not-loaded');
    expect(first.own()[0].closed).toBe(true);
    panel.switchKernel(null);
    expect(sidebar.state.kind).toBe('no-kernel');
    controller.dispose();
  });

  it('binds nothing for a panel disposed before its session was ready', async () => {
    const kernel = new StubKernel();
    const panel = new StubPanel('a.ipynb', kernel);
    let ready: () => void = () => undefined;
    panel.sessionContext.ready = new Promise<void>(resolve => (ready = resolve));
    const { controller } = setup(panel);
    panel.dispose();
    ready();
    await settle();
    expect(controller.channelCount).toBe(0);
    expect(kernel.targets).toEqual({});
    controller.dispose();
  });

  it('control: the same late-ready panel, still open, does bind', async () => {
    const kernel = new StubKernel();
    const panel = new StubPanel('a.ipynb', kernel);
    let ready: () => void = () => undefined;
    panel.sessionContext.ready = new Promise<void>(resolve => (ready = resolve));
    const { controller } = setup(panel);
    ready();
    await settle();
    expect(controller.channelCount).toBe(1);
    controller.dispose();
  });

  it('binds nothing after the controller is disposed', async () => {
    const kernel = new StubKernel();
    const panel = new StubPanel('a.ipynb', kernel);
    const { tracker, controller } = setup();
    controller.dispose();
    tracker.add(panel);
    await settle();
    expect(controller.channelCount).toBe(0);
    expect(kernel.targets).toEqual({});
  });

  it('refreshes every kernel on its interval (the heartbeat) and follows a new interval', async () => {
    jest.useFakeTimers();
    const kernel = new StubKernel();
    const panel = new StubPanel('a.ipynb', kernel);
    const { controller } = setup(panel);
    await settle();
    kernel.announce();
    const [comm] = kernel.own();
    jest.advanceTimersByTime(5000);
    expect(comm.sent).toEqual([{ type: 'refresh', interval_s: 5 }]);
    controller.setRefreshInterval(2);
    jest.advanceTimersByTime(4000);
    expect(comm.sent.slice(1)).toEqual([
      { type: 'refresh', interval_s: 2 },
      { type: 'refresh', interval_s: 2 }
    ]);
    controller.dispose();
    jest.advanceTimersByTime(10000);
    expect(comm.sent).toHaveLength(3); // disposed: no more heartbeats
  });

  it('reports Cancel failures as notes that stay', async () => {
    const kernel = new StubKernel();
    const panel = new StubPanel('a.ipynb', kernel);
    const { tracker, sidebar, controller } = setup(panel);
    tracker.activate(null);
    controller.cancel('job1');
    expect(sidebar.errors).toEqual(['Cancel failed: No notebook kernel is active.']);
    tracker.activate(panel);
    await settle();
    kernel.announce();
    controller.cancel('job1');
    expect(kernel.own()[0].sent).toEqual([{ type: 'cancel', job_id: 'job1' }]);
    kernel.own()[0].onMsg({ content: { data: { type: 'cancelled', job_id: 'job1', ok: false, error: 'gone' } } });
    kernel.own()[0].onMsg({ content: { data: snapshot() } });
    expect(sidebar.errors).toEqual(['Cancel failed: No notebook kernel is active.', 'Cancel failed: gone']);
    controller.dispose();
  });

  it('refresh() asks the active kernel, or looks for its comm when not connected yet', async () => {
    const kernel = new StubKernel();
    const panel = new StubPanel('a.ipynb', kernel);
    const { tracker, controller } = setup(panel);
    tracker.activate(panel);
    await settle();
    await controller.refresh(); // compound not loaded: comm_info finds nothing, nothing opened
    expect(kernel.own()).toHaveLength(0);
    kernel.kernelComms = { other: { target_name: 'compound' } };
    await controller.refresh(); // loaded meanwhile (e.g. before this page): it connects
    expect(kernel.own()).toHaveLength(1);
    await controller.refresh();
    expect(kernel.own()[0].sent).toEqual([{ type: 'refresh', interval_s: 5 }]);
    controller.dispose();
  });
});
