/**
 * The plugins' wiring that runs without a JupyterLab: reading the sidebar settings, and a page without notebooks.
 */
import plugins, { readSettings, SIDEBAR_PLUGIN_ID } from '../index';
import { DEFAULT_SETTINGS } from '../tokens';

describe('sidebar plugin', () => {
  it('reads its settings, with defaults for anything missing or out of range', () => {
    expect(readSettings(null)).toEqual(DEFAULT_SETTINGS);
    expect(readSettings({ composite: { refreshInterval: 12, openOnLoad: true } } as any)).toEqual({
      refreshInterval: 12,
      openOnLoad: true
    });
    expect(readSettings({ composite: { refreshInterval: 0 } } as any).refreshInterval).toBe(5);
  });

  it('adds nothing on a page without notebooks (Notebook 7 file browser)', () => {
    const sidebar = plugins.find(p => p.id === SIDEBAR_PLUGIN_ID)!;
    const added: any[] = [];
    const app = { shell: { add: (w: any) => added.push(w) }, commands: { addCommand: () => undefined } } as any;
    expect(sidebar.requires ?? []).toEqual([]); // nothing required: the tracker is optional
    sidebar.activate(app, null, null, null, null, null);
    expect(added).toEqual([]);
  });
});
