"""What both panels share: their set-up (the .ui, Apply, Cancel, Install, installing before a run, the
progress bar), the parameter node they are bound to, built from the option registry, and its lifecycle
across module switches and scene closes (Slicer's scripted-module template)."""

from typing import Annotated

import slicer
import vtk
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from .dependencies import installDependencies, missingDependencies


def parameterNodeClass(name, settings, nodes):
    """A ``@parameterNodeWrapper`` class called ``name``.

    ``settings``: field -> (type, choices, (min, max), default), e.g. :func:`OsteoAILib.options.parameter_fields`;
    a field with choices is a ``Choice`` (its combo box lists them in this order), one with a range a
    ``WithinRange`` (spin box limits). ``nodes``: field -> MRML class name.
    """
    annotations, defaults = {}, {}
    for field, (typ, choices, limits, default) in settings.items():
        if choices:
            typ = Annotated[typ, Choice(list(choices))]
        elif limits:
            typ = Annotated[typ, WithinRange(*limits)]
        annotations[field] = typ
        defaults[field] = default
    for field, mrmlClass in nodes.items():
        annotations[field] = getattr(slicer, mrmlClass)
    body = {
        "__annotations__": annotations,
        "__module__": __name__,
        **defaults,
        "__doc__": f"{name}: generated from the option registry (OsteoAILib.options).",
    }
    return parameterNodeWrapper(type(name, (), body))


# The Slicer layer's files, each after those it imports (for Reload)
RELOAD_ORDER = (
    "background",
    "dependencies",
    "parameters",
    "panel",
    "sample_data",
    "self_test",
    "segment_module",
    "osteoai_module",
)


class ParameterNodePanel(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Parameter-node lifecycle shared by the OsteoAI panels.

    The GUI stays bound to the logic's parameter node across module switches and scene closes;
    subclasses call :meth:`setupPanel` in setup(), redraw their buttons in ``updateGui`` and word their
    Dependencies line in ``dependencyStatusText`` (their translated strings stay in their own file)."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setupPanel(self, uiFile, logic, connections=()):
        """Load ``uiFile`` (under Resources), bind ``logic`` and the buttons both panels have (Apply, Cancel,
        Install) plus ``connections``, ``(widget name, signal, slot)`` each; then bind the parameter node."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath(uiFile))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = logic
        self.observeSceneClose()
        common = [
            ("applyButton", "clicked(bool)", self.onApply),
            ("cancelButton", "clicked(bool)", self.onCancel),
            ("installButton", "clicked(bool)", self.onInstall),
        ]
        for name, signal, slot in common + list(connections):
            getattr(self.ui, name).connect(signal, slot)
        self.initializeParameterNode()
        self.updateDependencyStatus()

    def updateDependencyStatus(self):
        self.ui.dependencyStatusLabel.text = self.dependencyStatusText(missingDependencies())

    def dependencyStatusText(self, missing):
        """The Dependencies line for ``missing`` packages (translated in the panel's own file)."""
        raise NotImplementedError

    def installMissing(self, radiomics=False):
        """Before a run: install what is missing (the user is asked); one-line error if it stays missing."""
        if missingDependencies(radiomics=radiomics):
            try:
                installDependencies(radiomics=radiomics)
            finally:
                self.updateDependencyStatus()

    def showStarting(self, message):
        self.ui.progressBar.visible = True
        self.ui.progressBar.value = 0
        self.ui.statusLabel.text = message

    def showEnd(self, ok, message):
        self.ui.progressBar.visible = ok
        self.ui.statusLabel.text = message

    def onCancel(self):
        self.logic.cancel()

    def observeSceneClose(self):
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

    def cleanup(self):
        self.removeObservers()
        if self.logic:
            self.logic.cancel()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self._disconnectGui()

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def _disconnectGui(self):
        # "is not None": the first GUI tag of a parameter node is 0. Left connected, a second connectGui
        # (module re-entered) clears the combo boxes under the old connectors, which write their last choice.
        if self._parameterNode and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGui)

    def setParameterNode(self, node):
        self._disconnectGui()
        self._parameterNode = node
        if node:
            self._parameterNodeGuiTag = node.connectGui(self.ui)
            self.addObserver(node, vtk.vtkCommand.ModifiedEvent, self.updateGui)
            self.updateGui()

    def updateGui(self, caller=None, event=None):
        raise NotImplementedError

    def onReload(self):
        """Slicer's Reload re-reads the module file only: the panels and logic it imports from here are
        reloaded first, so a developer's edit to them takes effect too."""
        import importlib
        import sys

        for name in RELOAD_ORDER:
            module = sys.modules.get(f"{__package__}.{name}")
            if module is not None:
                importlib.reload(module)
        ScriptedLoadableModuleWidget.onReload(self)

    def onProgress(self, fraction, message):
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message
