/**
 * Names shared by the compound JupyterLab plugins, and the JSON shapes the kernel sends
 * (compound/jupyter/snapshot.py builds them).
 */

/** Plugin ids share this prefix. */
export const PLUGIN_PREFIX = 'compound-jupyterlab';

/** The comm target compound registers in the kernel on `import compound` / `%load_ext compound`. */
export const COMM_TARGET = 'compound';

/** MIME type of `cp.show(program)`. */
export const PIPELINE_MIME_TYPE = 'application/vnd.compound.pipeline+json';

/** Id of the sidebar widget (Galata tests select on it; the layout restorer keys on it). */
export const SIDEBAR_ID = 'compound-sidebar';

/** Translation domain of the extension's strings. */
export const TRANSLATION_DOMAIN = 'compound-jupyterlab';

export enum CommandIDs {
  showSidebar = 'compound:show-sidebar',
  refreshSidebar = 'compound:refresh-sidebar'
}

/** The sidebar plugin's settings (schema/sidebar.json). */
export interface ISidebarSettings {
  /** Seconds between the sidebar's refresh requests (also its heartbeat: the kernel drops silent pages). */
  refreshInterval: number;
  /** Open the sidebar when JupyterLab (or Notebook 7) loads. */
  openOnLoad: boolean;
}

export const DEFAULT_SETTINGS: ISidebarSettings = { refreshInterval: 5, openOnLoad: false };

export interface IEngineStats {
  requests_total?: number;
  requests_running?: number;
  queue_depth?: number;
  batch_size_hist?: { [size: string]: number };
  tokens_per_s?: number;
  generated_tokens?: number;
  prompt_tokens?: number;
  prefill_tokens_saved?: number;
  errors?: number;
}

export interface IModelSnapshot {
  name: string;
  model_id: string;
  params: number;
  device: string;
  dtype: string;
  memory_bytes: number;
  adapters: string[];
  stats: IEngineStats;
  /** Prompt + output tokens one call may use (the engine's max_seq_len). */
  context_tokens?: number | null;
}

export type JobStatus = 'running' | 'stopping' | 'done' | 'failed' | 'stopped';

export interface IJobSnapshot {
  id: string;
  name: string;
  kind: string;
  status: JobStatus;
  progress: number | null;
  detail?: string | null;
  started_at?: number | null;
  elapsed_s?: number | null;
}

export interface IDeviceMemory {
  kind: 'cuda' | 'cpu' | string;
  name: string;
  used_bytes: number;
  total_bytes: number | null;
}

/** Kernel -> frontend: the whole state, sent when it changes (rate-limited). */
export interface IKernelSnapshot {
  type: 'snapshot';
  models: IModelSnapshot[];
  jobs: IJobSnapshot[];
  device: IDeviceMemory;
  pid: number;
  time: number;
}

/** Kernel -> frontend: the answer to a cancel request. */
export interface ICancelReply {
  type: 'cancelled';
  job_id: string;
  ok: boolean;
  error: string | null;
}

export interface IPipelineField {
  name: string;
  type: string;
  desc: string;
}

export interface IPipelineLM {
  model: string;
  base: string;
  adapter: string | null;
}

export interface IPipelineModule {
  name: string;
  type: string;
  signature: string;
  instructions: string;
  inputs: IPipelineField[];
  outputs: IPipelineField[];
  demos: number;
  lm: IPipelineLM | null;
  lm_source: 'predictor' | 'default' | 'none';
}

/** Payload of PIPELINE_MIME_TYPE (compound/trace/show.py). */
export interface IPipeline {
  program: string;
  modules: IPipelineModule[];
  default_lm: IPipelineLM | null;
  dspy_adapter: string;
}
