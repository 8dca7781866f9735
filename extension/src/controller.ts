/**
 * Follows the notebooks: one KernelChannel per kernel, shared by every notebook panel on that kernel (so a
 * second notebook on the same kernel sees it too, and a kernel's announcement is never missed while another
 * notebook is in front), and shows the active notebook's kernel in the sidebar. Every `refreshInterval` seconds
 * each channel asks for a snapshot, which is also the page's heartbeat for the kernel.
 */
import { ISessionContext } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel } from '@jupyterlab/services';
import { nullTranslator, TranslationBundle } from '@jupyterlab/translation';

import { KernelChannel } from './channel';
import { CompoundSidebar, SidebarState } from './sidebar';
import { DEFAULT_SETTINGS, TRANSLATION_DOMAIN } from './tokens';

interface IShared {
  channel: KernelChannel;
  panels: Set<NotebookPanel>;
}

export class SidebarController {
  constructor(
    sidebar: CompoundSidebar,
    tracker: INotebookTracker,
    trans: TranslationBundle = nullTranslator.load(TRANSLATION_DOMAIN)
  ) {
    this._sidebar = sidebar;
    this._tracker = tracker;
    this._trans = trans;
    sidebar.onCancel = jobId => this.cancel(jobId);
    tracker.widgetAdded.connect(this._onWidgetAdded, this);
    tracker.currentChanged.connect(this._onCurrentChanged, this);
    tracker.forEach(panel => this._track(panel));
    this.setRefreshInterval(DEFAULT_SETTINGS.refreshInterval);
    this.render();
  }

  /** The channel of the active notebook's kernel, if any. */
  get current(): KernelChannel | null {
    const panel = this._tracker.currentWidget;
    return panel ? this.channelOf(panel) : null;
  }

  /** The channel a panel shares with the other panels on its kernel. */
  channelOf(panel: NotebookPanel): KernelChannel | null {
    const kernelId = this._kernelOf.get(panel);
    return kernelId ? this._shared.get(kernelId)?.channel ?? null : null;
  }

  /** How many channels are open (one per kernel, however many panels show it). */
  get channelCount(): number {
    return this._shared.size;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Seconds between refreshes (the sidebar's `refreshInterval` setting). */
  setRefreshInterval(seconds: number): void {
    this._intervalS = Math.max(1, seconds || DEFAULT_SETTINGS.refreshInterval);
    clearInterval(this._timer);
    this._timer = setInterval(() => this.refreshAll(), this._intervalS * 1000);
    for (const { channel } of this._shared.values()) {
      channel.intervalS = this._intervalS;
    }
  }

  cancel(jobId: string): void {
    const channel = this.current;
    try {
      if (!channel) {
        throw new Error(this._trans.__('No notebook kernel is active.'));
      }
      channel.cancel(jobId);
    } catch (error) {
      this._sidebar.showError(this._trans.__('Cancel failed: %1', (error as Error).message));
    }
  }

  /** Ask the active kernel for a fresh snapshot (or find its comm if we missed the announcement). */
  async refresh(): Promise<void> {
    const channel = this.current;
    if (channel && !channel.refresh() && !(await channel.connect())) {
      this.render();
    }
  }

  /** One refresh per kernel: a snapshot request that tells each kernel this page is alive. */
  refreshAll(): void {
    for (const { channel } of this._shared.values()) {
      if (!channel.refresh()) {
        void channel.connect().catch(() => undefined);
      }
    }
  }

  render(): void {
    if (this._isDisposed) {
      return;
    }
    const panel = this._tracker.currentWidget;
    let state: SidebarState;
    if (!panel) {
      state = { kind: 'no-notebook' };
    } else {
      const notebook = panel.context.path;
      const channel = this.channelOf(panel);
      if (!channel) {
        state = { kind: 'no-kernel', notebook };
      } else if (!channel.snapshot) {
        state = { kind: 'not-loaded', notebook };
      } else {
        state = { kind: 'live', notebook, snapshot: channel.snapshot };
      }
    }
    this._sidebar.render(state);
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    clearInterval(this._timer);
    this._tracker.widgetAdded.disconnect(this._onWidgetAdded, this);
    this._tracker.currentChanged.disconnect(this._onCurrentChanged, this);
    for (const unbind of this._unbind.values()) {
      unbind();
    }
    for (const { channel } of this._shared.values()) {
      channel.dispose();
    }
    this._shared.clear();
    this._kernelOf.clear();
    this._connectionOf.clear();
  }

  private _onWidgetAdded(_: INotebookTracker, panel: NotebookPanel): void {
    this._track(panel);
  }

  private _onCurrentChanged(): void {
    this.render();
  }

  private _track(panel: NotebookPanel): void {
    if (this._unbind.has(panel) || panel.isDisposed) {
      return;
    }
    const session: ISessionContext = panel.sessionContext;
    const bind = () => {
      // A session that becomes ready after its panel (or this controller) is gone binds nothing.
      if (panel.isDisposed || this._isDisposed) {
        return;
      }
      this._bind(panel, session.session?.kernel ?? null);
    };
    const forget = () => {
      session.kernelChanged.disconnect(bind);
      this._unbind.delete(panel);
      this._release(panel);
      this.render();
    };
    session.kernelChanged.connect(bind);
    session.ready.then(bind).catch(() => undefined); // a failed session start shows as "no kernel"
    panel.disposed.connect(forget);
    this._unbind.set(panel, () => {
      session.kernelChanged.disconnect(bind);
      panel.disposed.disconnect(forget);
    });
  }

  private _bind(panel: NotebookPanel, kernel: Kernel.IKernelConnection | null): void {
    const kernelId = kernel && !kernel.isDisposed ? kernel.id : null;
    if (this._kernelOf.get(panel) === kernelId && kernelId !== null) {
      this._adopt(this._shared.get(kernelId)!, kernel!); // kernelChanged and ready both report the first kernel
      return;
    }
    this._release(panel);
    if (kernel && kernelId) {
      let shared = this._shared.get(kernelId);
      if (!shared) {
        shared = { channel: this._openChannel(kernel), panels: new Set() };
        this._shared.set(kernelId, shared);
      } else {
        this._adopt(shared, kernel);
      }
      shared.panels.add(panel);
      this._kernelOf.set(panel, kernelId);
      this._connectionOf.set(panel, kernel);
    }
    if (this._tracker.currentWidget === panel) {
      this.render();
    }
  }

  /**
   * JupyterLab lets one connection per kernel handle comms (normally the first notebook's). A channel opened on a
   * connection that does not, or whose connection went away with its panel, moves to one that does.
   */
  private _adopt(shared: IShared, kernel: Kernel.IKernelConnection, force = false): void {
    const current = shared.channel.kernel;
    const stale = force || current.isDisposed || (!current.handleComms && kernel.handleComms);
    if (stale && kernel !== current && !kernel.isDisposed) {
      shared.channel.dispose();
      shared.channel = this._openChannel(kernel);
    }
  }

  private _openChannel(kernel: Kernel.IKernelConnection): KernelChannel {
    const channel = new KernelChannel(kernel);
    channel.intervalS = this._intervalS;
    channel.changed.connect(() => {
      const panel = this._tracker.currentWidget;
      if (panel && this.channelOf(panel) === channel) {
        this.render();
      }
    });
    channel.cancelReplied.connect((_, reply) => {
      if (!reply.ok) {
        this._sidebar.showError(this._trans.__('Cancel failed: %1', reply.error ?? ''));
      }
    });
    // The kernel may be busy or still starting; comm_info waits for it.
    void channel.connect().catch(() => undefined);
    return channel;
  }

  private _release(panel: NotebookPanel): void {
    const kernelId = this._kernelOf.get(panel);
    const connection = this._connectionOf.get(panel);
    this._kernelOf.delete(panel);
    this._connectionOf.delete(panel);
    const shared = kernelId ? this._shared.get(kernelId) : undefined;
    if (!shared || !kernelId) {
      return;
    }
    shared.panels.delete(panel);
    if (shared.panels.size === 0) {
      shared.channel.dispose();
      this._shared.delete(kernelId);
      return;
    }
    if (shared.channel.kernel !== connection) {
      return;
    }
    // The channel's connection belonged to the closed panel: move to a remaining panel's, one that handles comms
    // if there is one.
    const others = [...shared.panels]
      .map(other => this._connectionOf.get(other))
      .filter((k): k is Kernel.IKernelConnection => !!k && !k.isDisposed);
    const next = others.find(k => k.handleComms) ?? others[0];
    if (next) {
      this._adopt(shared, next, true);
    }
  }

  private _sidebar: CompoundSidebar;
  private _tracker: INotebookTracker;
  private _trans: TranslationBundle;
  private _intervalS: number = DEFAULT_SETTINGS.refreshInterval;
  private _timer: ReturnType<typeof setInterval> | undefined = undefined;
  private _isDisposed = false;
  private _shared = new Map<string, IShared>();
  private _kernelOf = new Map<NotebookPanel, string>();
  private _connectionOf = new Map<NotebookPanel, Kernel.IKernelConnection>();
  private _unbind = new Map<NotebookPanel, () => void>();
}
