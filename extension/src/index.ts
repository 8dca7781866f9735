/**
 * compound's JupyterLab plugins: the "Compound" sidebar (models, engines, jobs of the active notebook's
 * kernel, fed by the `compound` comm) and the pipeline view renderer for `cp.show(program)`.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { buildIcon } from '@jupyterlab/ui-components';

import { SidebarController } from './controller';
import { pipelineRendererFactory } from './mime';
import { CompoundSidebar } from './sidebar';
import { CommandIDs, PLUGIN_PREFIX } from './tokens';

const sidebarPlugin: JupyterFrontEndPlugin<void> = {
  id: `${PLUGIN_PREFIX}:sidebar`,
  description: 'The Compound sidebar: loaded models, engine statistics, jobs and device memory of the active kernel.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null
  ) => {
    const sidebar = new CompoundSidebar();
    sidebar.title.icon = buildIcon;
    app.shell.add(sidebar, 'left', { rank: 900 });
    const controller = new SidebarController(sidebar, tracker);

    app.commands.addCommand(CommandIDs.showSidebar, {
      label: 'Show Compound Sidebar',
      execute: () => app.shell.activateById(sidebar.id)
    });
    app.commands.addCommand(CommandIDs.refreshSidebar, {
      label: 'Refresh Compound Sidebar',
      execute: () => controller.refresh()
    });
    palette?.addItem({ command: CommandIDs.showSidebar, category: 'Compound' });
    palette?.addItem({ command: CommandIDs.refreshSidebar, category: 'Compound' });
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
