/**
 * One kernel's compound comm, shared by every panel on that kernel: opens its own comm to the kernel's `compound`
 * target once compound is loaded there, keeps the latest snapshot and sends Cancel requests. `refresh()` asks for a
 * snapshot and doubles as the page's heartbeat (the kernel drops comms it stops hearing from: reloaded or closed
 * pages). A kernel restart drops the snapshot.
 */
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { COMM_TARGET, ICancelReply, IKernelSnapshot } from './tokens';

export class KernelChannel implements IDisposable {
  constructor(kernel: Kernel.IKernelConnection) {
    this.kernel = kernel;
    this._onAnnounce = this._onAnnounce.bind(this);
    // JupyterLab lets one connection per kernel handle comms (the first: normally the notebook's own).
    if (kernel.handleComms) {
      kernel.registerCommTarget(COMM_TARGET, this._onAnnounce);
    }
    kernel.statusChanged.connect(this._onStatus, this);
  }

  readonly kernel: Kernel.IKernelConnection;

  /** Fires with the new snapshot, or null when the kernel restarted or compound's comm closed. */
  get changed(): ISignal<this, IKernelSnapshot | null> {
    return this._changed;
  }

  /** Fires with the kernel's answer to each cancel request. */
  get cancelReplied(): ISignal<this, ICancelReply> {
    return this._cancelReplied;
  }

  get snapshot(): IKernelSnapshot | null {
    return this._snapshot;
  }

  get isConnected(): boolean {
    return this._comm !== null;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /**
   * Connect if compound is already loaded in the kernel (page reload, notebook opened later): any open
   * `compound` comm says so. Otherwise wait: `import compound` announces itself and `_onAnnounce` connects.
   */
  async connect(): Promise<boolean> {
    if (this._comm || this._isDisposed || !this.kernel.handleComms) {
      return this._comm !== null;
    }
    const reply = await this.kernel.requestCommInfo({ target_name: COMM_TARGET });
    if (this._isDisposed || this._comm || reply.content.status !== 'ok') {
      return this._comm !== null;
    }
    if (Object.keys(reply.content.comms).length === 0) {
      return false;
    }
    this._openOwnComm();
    return true;
  }

  /** Seconds between refreshes; sent to the kernel, which keeps our comm while it hears from us this often. */
  intervalS = 5;

  /** Ask for a fresh snapshot (and tell the kernel this page is alive). False when not connected. */
  refresh(): boolean {
    if (!this._comm || this._comm.isDisposed) {
      return false;
    }
    this._comm.send({ type: 'refresh', interval_s: this.intervalS });
    return true;
  }

  /** Ask the kernel to stop a job (job.stop(): it ends gracefully, keeping its best result). */
  cancel(jobId: string): void {
    if (!this._comm) {
      throw new Error(
        'compound is not connected to this kernel; run `import compound` in the notebook first.'
      );
    }
    this._comm.send({ type: 'cancel', job_id: jobId });
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this.kernel.statusChanged.disconnect(this._onStatus, this);
    if (!this.kernel.isDisposed && this.kernel.handleComms) {
      this.kernel.removeCommTarget(COMM_TARGET, this._onAnnounce);
    }
    // Our comm is ours alone: close it so the kernel stops feeding it.
    const comm = this._comm;
    this._comm = null;
    if (comm && !comm.isDisposed) {
      try {
        comm.close();
      } catch {
        comm.dispose(); // the kernel is gone
      }
    }
    Signal.clearData(this);
  }

  /**
   * The kernel opened its announcement comm (on `import compound`). Every frontend of the kernel gets it, and
   * one without this extension (a console, VS Code) closes it, which ends it for all. So the announcement only
   * says "compound is here": show its snapshot, then talk over a comm of our own.
   */
  private _onAnnounce(_announcement: Kernel.IComm, msg: KernelMessage.ICommOpenMsg): void {
    this._handle(msg.content.data);
    if (!this._comm) {
      this._openOwnComm();
    }
  }

  private _openOwnComm(): void {
    const comm = this.kernel.createComm(COMM_TARGET);
    this._comm = comm;
    comm.onMsg = msg => this._handle(msg.content.data);
    comm.onClose = () => {
      // The kernel closed it (%unload_ext compound): nothing more will come.
      if (this._comm === comm) {
        this._comm = null;
        this._setSnapshot(null);
      }
    };
    comm.open({ type: 'refresh', interval_s: this.intervalS });
  }

  private _handle(data: unknown): void {
    const message = data as { type?: string };
    if (message?.type === 'snapshot') {
      this._setSnapshot(message as IKernelSnapshot);
    } else if (message?.type === 'cancelled') {
      this._cancelReplied.emit(message as ICancelReply);
    }
  }

  private _onStatus(_: Kernel.IKernelConnection, status: Kernel.Status): void {
    // The kernel process is gone: its models and jobs with it. The services layer disposes our comm.
    if (status === 'restarting' || status === 'autorestarting' || status === 'dead') {
      this._comm = null;
      this._setSnapshot(null);
    }
  }

  private _setSnapshot(snapshot: IKernelSnapshot | null): void {
    this._snapshot = snapshot;
    this._changed.emit(snapshot);
  }

  private _comm: Kernel.IComm | null = null;
  private _snapshot: IKernelSnapshot | null = null;
  private _isDisposed = false;
  private _changed = new Signal<this, IKernelSnapshot | null>(this);
  private _cancelReplied = new Signal<this, ICancelReply>(this);
}
