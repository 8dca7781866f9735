/**
 * compound's JupyterLab plugins: the "Compound" sidebar (models, engines, jobs of the active notebook's
 * kernel, fed by the `compound` comm) and the pipeline view renderer for `cp.show(program)`.
 *
 * Both run in JupyterLab and in Notebook 7. Notebook 7's tree (file browser) page has no notebook tracker: there
 * the sidebar plugin activates and adds nothing.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';
import { buildIcon } from '@jupyterlab/ui-components';

import { SidebarController } from './controller';
import { pipelineRendererFactory } from './mime';
import { CompoundSidebar } from './sidebar';
import { CommandIDs, DEFAULT_SETTINGS, ISidebarSettings, PLUGIN_PREFIX, TRANSLATION_DOMAIN } from './tokens';

export const SIDEBAR_PLUGIN_ID = `${PLUGIN_PREFIX}:sidebar`;

/** The settings as the sidebar uses them (defaults for anything missing or out of range). */
export function readSettings(settings: ISettingRegistry.ISettings | null): ISidebarSettings {
  const composite = (settings?.composite ?? {}) as Partial<ISidebarSettings>;
  const interval = Number(composite.refreshInterval);
  return {
    refreshInterval: interval >= 1 ? interval : DEFAULT_SETTINGS.refreshInterval,
    openOnLoad: composite.openOnLoad ?? DEFAULT_SETTINGS.openOnLoad
  };
}

const sidebarPlugin: JupyterFrontEndPlugin<void> = {
  id: SIDEBAR_PLUGIN_ID,
  description: 'The Compound sidebar: loaded models, engine statistics, jobs and device memory of the active kernel.',
  autoStart: true,
  optional: [INotebookTracker, ICommandPalette, ILayoutRestorer, ISettingRegistry, ITranslator],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker | null,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null,
    translator: ITranslator | null
  ) => {
    if (!tracker) {
      // A page without notebooks (Notebook 7's file browser): nothing to follow.
      return;
    }
    const trans = (translator ?? nullTranslator).load(TRANSLATION_DOMAIN);
    const sidebar = new CompoundSidebar(trans);
    sidebar.title.icon = buildIcon;
    app.shell.add(sidebar, 'left', { rank: 900 });
    restorer?.add(sidebar, sidebar.id);
    const controller = new SidebarController(sidebar, tracker, trans);

    app.commands.addCommand(CommandIDs.showSidebar, {
      label: trans.__('Show Compound Sidebar'),
      execute: () => app.shell.activateById(sidebar.id)
    });
    app.commands.addCommand(CommandIDs.refreshSidebar, {
      label: trans.__('Refresh Compound Sidebar'),
      execute: () => controller.refresh()
    });
    palette?.addItem({ command: CommandIDs.showSidebar, category: 'Compound' });
    palette?.addItem({ command: CommandIDs.refreshSidebar, category: 'Compound' });

    const apply = (settings: ISettingRegistry.ISettings | null, first: boolean) => {
      const current = readSettings(settings);
      controller.setRefreshInterval(current.refreshInterval);
      if (first && current.openOnLoad) {
        void app.restored.then(() => app.shell.activateById(sidebar.id));
      }
    };
    if (settingRegistry) {
      settingRegistry
        .load(SIDEBAR_PLUGIN_ID)
        .then(settings => {
          apply(settings, true);
          settings.changed.connect(() => apply(settings, false));
        })
        .catch(reason => {
          console.warn(`${PLUGIN_PREFIX}: could not load the sidebar settings, using the defaults`, reason);
          apply(null, true);
        });
    } else {
      apply(null, true);
    }
    console.log(`JupyterLab extension ${PLUGIN_PREFIX} is activated!`);
  }
};

const pipelinePlugin: JupyterFrontEndPlugin<void> = {
  id: `${PLUGIN_PREFIX}:pipeline-view`,
  description: 'Renders cp.show(program) outputs as a pipeline of DSPy modules.',
  autoStart: true,
  requires: [IRenderMimeRegistry],
  activate: (app: JupyterFrontEnd, rendermime: IRenderMimeRegistry) => {
    rendermime.addFactory(pipelineRendererFactory, 0);
  }
};

export default [sidebarPlugin, pipelinePlugin];
