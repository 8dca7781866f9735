/**
 * Follows the active notebook: keeps one KernelChannel per open notebook (so a kernel's announcement is
 * never missed while another notebook is in front) and shows the active one's state in the sidebar.
 */
import { ISessionContext } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';

import { KernelChannel } from './channel';
import { CompoundSidebar, SidebarState } from './sidebar';

export class SidebarController {
  constructor(sidebar: CompoundSidebar, tracker: INotebookTracker) {
    this._sidebar = sidebar;
    this._tracker = tracker;
    sidebar.onCancel = jobId => this.cancel(jobId);
    tracker.widgetAdded.connect((_, panel) => this._track(panel));
    tracker.forEach(panel => this._track(panel));
    tracker.currentChanged.connect(() => this.render());
    this.render();
  }

  /** The channel of the active notebook's kernel, if any. */
  get current(): KernelChannel | null {
    const panel = this._tracker.currentWidget;
    return panel ? this._channels.get(panel) ?? null : null;
  }

  cancel(jobId: string): void {
    const channel = this.current;
    try {
      if (!channel) {
        throw new Error('No notebook kernel is active.');
      }
      channel.cancel(jobId);
    } catch (error) {
      this._sidebar.showError(`Cancel failed: ${(error as Error).message}`);
    }
  }

  /** Ask the active kernel for a fresh snapshot (or find its comm if we missed the announcement). */
  async refresh(): Promise<void> {
    const channel = this.current;
    if (channel && !(await channel.connect())) {
      this.render();
    }
  }

  render(): void {
    const panel = this._tracker.currentWidget;
    let state: SidebarState;
    if (!panel) {
      state = { kind: 'no-notebook' };
    } else {
      const notebook = panel.context.path;
      const channel = this._channels.get(panel);
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

  private _track(panel: NotebookPanel): void {
    const session: ISessionContext = panel.sessionContext;
    const bind = () => {
      const kernel = session.session?.kernel;
      if (kernel && this._channels.get(panel)?.kernel === kernel) {
        return; // kernelChanged and ready both report the first kernel
      }
      this._channels.get(panel)?.dispose();
      this._channels.delete(panel);
      if (kernel && !kernel.isDisposed) {
        const channel = new KernelChannel(kernel);
        this._channels.set(panel, channel);
        channel.changed.connect(() => {
          if (this._tracker.currentWidget === panel) {
            this.render();
          }
        });
        channel.cancelReplied.connect((_, reply) => {
          if (!reply.ok && this._tracker.currentWidget === panel) {
            this._sidebar.showError(`Cancel failed: ${reply.error}`);
          }
        });
        // The kernel may be busy or still starting; comm_info waits for it.
        void channel.connect().catch(() => undefined);
      }
      if (this._tracker.currentWidget === panel) {
        this.render();
      }
    };
    session.kernelChanged.connect(bind);
    session.ready.then(bind).catch(() => undefined); // a failed session start shows as "no kernel"
    panel.disposed.connect(() => {
      session.kernelChanged.disconnect(bind);
      this._channels.get(panel)?.dispose();
      this._channels.delete(panel);
      this.render();
    });
  }

  private _sidebar: CompoundSidebar;
  private _tracker: INotebookTracker;
  private _channels = new Map<NotebookPanel, KernelChannel>();
}
