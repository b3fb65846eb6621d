"""Run the real Slicer module files without the Slicer application.

slicer-core gives real MRML and logic classes; ``../shared/slicer-python`` gives Slicer's own Python layer
(ScriptedLoadableModule, parameterNodeWrapper, i18n), appended to ``slicer.__path__``. What is left, the Qt
and CTK widgets and the application object, is replaced here by small stand-ins:

- widgets built from the modules' ``.ui`` files by a ``QUiLoader`` that reads the XML (every named widget,
  its properties, ``SlicerParameterName``, combo box items), with PythonQt's signal/property behaviour
  (``connect("clicked(bool)", slot)``, ``widget.text = ...`` emitting ``textChanged``...), so Slicer's
  real parameterNodeWrapper GUI connectors bind them to the parameter node;
- a ``QProcess`` that really starts the process, reads its output on a thread and delivers
  ``readyReadStandardOutput`` / ``finished`` on the "GUI thread" when ``slicer.app.processEvents()`` runs
  (or inside ``waitForFinished``), like Qt;
- ``slicer.app`` / ``slicer.modules`` with just what the modules use.

``harness(tmp_path)`` is a context manager; it undoes every change to ``sys.modules`` and ``slicer`` on exit.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import ClassVar

REPO = Path(__file__).resolve().parents[3]
SLICER_PYTHON = Path(os.environ.get("OSTEOAI_SLICER_PYTHON", REPO.parent / "shared" / "slicer-python"))
SKIP_REASON = (
    f"Slicer's Python layer not found at {SLICER_PYTHON} (../shared/slicer-python next to the "
    "checkout, or set OSTEOAI_SLICER_PYTHON): the module harness cannot run"
)

_EVENTS: queue.Queue = queue.Queue()  # callbacks posted by worker threads, run by processEvents()


def process_events():
    while True:
        try:
            fn = _EVENTS.get_nowait()
        except queue.Empty:
            return
        fn()


# --------------------------------------------------------------------------------------------------
# Signals and objects (PythonQt semantics)


def _call(slot, args):
    try:
        sig = inspect.signature(slot)
    except (TypeError, ValueError):
        return slot(*args)
    params = list(sig.parameters.values())
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return slot(*args)
    n = len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty])
    nmax = len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])
    return slot(*args[: max(n, min(nmax, len(args)))])


class Signal:
    def __init__(self, owner):
        self.owner = owner
        self.slots = []

    def connect(self, slot):
        self.slots.append(slot)

    def disconnect(self, slot=None):
        if slot is None:
            self.slots.clear()
        elif slot in self.slots:
            self.slots.remove(slot)

    def emit(self, *args):
        if getattr(self.owner, "_blocked", False):
            return
        for slot in list(self.slots):
            _call(slot, args)


class QObject:
    SIGNALS: tuple = ("destroyed",)

    def __init__(self, parent=None, *args, **kwargs):
        self._props = {}
        self._children = []
        self._parent = None
        self._blocked = False
        self.name = ""
        for cls in type(self).__mro__:
            for s in getattr(cls, "SIGNALS", ()):
                if s not in self.__dict__:
                    self.__dict__[s] = Signal(self)
        if isinstance(parent, QObject):
            self.setParent(parent)

    # names
    @property
    def objectName(self):
        return self.name

    def setObjectName(self, n):
        self.name = n

    def className(self):
        return type(self).__name__

    # dynamic properties
    def property(self, name):
        return self._props.get(name)

    def setProperty(self, name, value):
        self._props[name] = value

    # tree
    def setParent(self, parent):
        if self._parent is not None and self in self._parent._children:
            self._parent._children.remove(self)
        self._parent = parent
        if parent is not None:
            parent._children.append(self)

    def parent(self):
        return self._parent

    def children(self):
        return list(self._children)

    def findChildren(self, cls=None):
        out = []
        for c in self._children:
            if cls is None or isinstance(c, cls):
                out.append(c)
            out += c.findChildren(cls)
        return out

    def blockSignals(self, b):
        old, self._blocked = self._blocked, bool(b)
        return old

    def connect(self, signature, slot):
        getattr(self, signature.split("(")[0]).connect(slot)

    def disconnect(self, signature, slot=None):
        getattr(self, signature.split("(")[0]).disconnect(slot)

    def deleteLater(self):
        pass


class _Layout(QObject):
    def __init__(self, parent=None):
        super().__init__()
        self.owner = None
        if isinstance(parent, QWidget):
            parent.setLayout(self)

    def addWidget(self, w, *a):
        if self.owner is not None:
            w.setParent(self.owner)
        else:
            self._children.append(w)

    def addRow(self, *items):
        for it in items:
            if isinstance(it, QWidget):
                self.addWidget(it)

    def addLayout(self, layout, *a):
        for w in list(layout._children):
            self.addWidget(w)

    def addStretch(self, *a):
        pass

    def addItem(self, *a):
        pass


class QWidget(QObject):
    def __init__(self, parent=None, *args, **kwargs):
        super().__init__(parent)
        self.enabled = True
        self.visible = True
        self.toolTip = ""
        self.width = 400
        self._layout = None

    def isWidgetType(self):
        return True

    def setLayout(self, layout):
        self._layout = layout
        layout.owner = self
        for w in list(layout._children):
            w.setParent(self)
        layout._children.clear()

    def layout(self):
        return self._layout

    def show(self):
        self.visible = True

    def hide(self):
        self.visible = False

    def setVisible(self, v):
        self.visible = bool(v)

    def setEnabled(self, v):
        self.enabled = bool(v)

    def isEnabled(self):
        return self.enabled

    def setMRMLScene(self, scene):
        self._scene = scene
        for c in self.findChildren(QWidget):
            if "setMRMLScene" in type(c).__dict__:
                c.setMRMLScene(scene)

    def mrmlScene(self):
        return getattr(self, "_scene", None)


def _value_property(attr, signals, convert=lambda v: v):
    def get(self):
        return self.__dict__.get(attr)

    def set_(self, value):
        value = convert(value)
        if self.__dict__.get(attr) == value:
            return
        self.__dict__[attr] = value
        for s, f in signals:
            getattr(self, s).emit(*f(self, value))

    return property(get, set_)


class QLabel(QWidget):
    def __init__(self, text="", parent=None, *a):
        super().__init__(parent)
        self.text = text
        self.pixmap = None

    def setText(self, t):
        self.text = t

    def setPixmap(self, p):
        self.pixmap = p

    def clear(self):
        self.text, self.pixmap = "", None


class QAbstractButton(QWidget):
    SIGNALS = ("clicked", "toggled", "pressed", "released")
    checked = _value_property("_checked", [("toggled", lambda s, v: (v,))], bool)

    def __init__(self, text="", parent=None, *a):
        super().__init__(parent)
        self.text = text
        self.checkable = False
        self.__dict__["_checked"] = False

    def click(self):
        if not self.enabled:
            return
        if self.checkable:
            self.checked = not self.checked
        self.clicked.emit(self.checked)

    def setChecked(self, v):
        self.checked = v


class QPushButton(QAbstractButton):
    pass


class QToolButton(QAbstractButton):
    pass


class QCheckBox(QAbstractButton):
    SIGNALS = ("stateChanged",)
    checked = _value_property(
        "_checked", [("toggled", lambda s, v: (v,)), ("stateChanged", lambda s, v: (2 if v else 0,))], bool
    )

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.checkable = True


class QLineEdit(QWidget):
    SIGNALS = ("textChanged", "editingFinished", "returnPressed")
    text = _value_property("_text", [("textChanged", lambda s, v: (v,))], str)

    def __init__(self, text="", parent=None):
        super().__init__(parent)
        self.__dict__["_text"] = str(text)
        self.placeholderText = ""


class QAbstractSpinBox(QWidget):
    SIGNALS = ("valueChanged",)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.minimum, self.maximum, self.decimals, self.singleStep, self.suffix = 0, 99, 2, 1, ""
        self.specialValueText = ""
        self.__dict__["_value"] = 0

    def setRange(self, lo, hi):
        self.minimum, self.maximum = lo, hi


class QSpinBox(QAbstractSpinBox):
    value = _value_property("_value", [("valueChanged", lambda s, v: (v,))], int)


class QDoubleSpinBox(QAbstractSpinBox):
    value = _value_property("_value", [("valueChanged", lambda s, v: (v,))], float)


class QSlider(QSpinBox):
    pass


class QComboBox(QWidget):
    SIGNALS = ("currentIndexChanged", "currentTextChanged", "activated")
    currentIndex = _value_property(
        "_index",
        [("currentIndexChanged", lambda s, v: (v,)), ("currentTextChanged", lambda s, v: (s.currentText,))],
        int,
    )

    def __init__(self, parent=None):
        super().__init__(parent)
        self.items = []
        self.__dict__["_index"] = -1

    def addItem(self, text, data=None):
        self.items.append((str(text), data))
        if self.currentIndex < 0:
            self.currentIndex = 0

    def clear(self):
        self.items = []
        self.currentIndex = -1

    @property
    def count(self):
        return len(self.items)

    @property
    def currentText(self):
        return self.items[self.currentIndex][0] if 0 <= self.currentIndex < len(self.items) else ""

    def itemText(self, i):
        return self.items[i][0]

    def findText(self, t):
        return next((i for i, (x, _) in enumerate(self.items) if x == t), -1)


class QProgressBar(QWidget):
    SIGNALS = ("valueChanged",)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.value, self.minimum, self.maximum = 0, 0, 100


class QTextEdit(QWidget):
    SIGNALS = ("textChanged",)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.html = ""
        self.plainText = ""
        self.readOnly = False
        self.openExternalLinks = False

    def setHtml(self, h):
        self.html = h

    def toHtml(self):
        return self.html

    def setPlainText(self, t):
        self.plainText = t


class QTextBrowser(QTextEdit):
    pass


class QListWidgetItem:
    def __init__(self, text):
        self._text = text

    def text(self):
        return self._text


class QListWidget(QWidget):
    SIGNALS = ("currentRowChanged", "itemClicked")
    currentRow = _value_property("_row", [("currentRowChanged", lambda s, v: (v,))], int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._items = []
        self.__dict__["_row"] = -1

    def addItem(self, text):
        self._items.append(QListWidgetItem(str(text)))

    def clear(self):
        self._items = []
        self.currentRow = -1

    @property
    def count(self):
        return len(self._items)

    def item(self, i):
        return self._items[i]

    def setCurrentRow(self, r):
        self.currentRow = r


class QPixmap:
    def __init__(self, path=""):
        self.path = str(path)

    def isNull(self):
        return not os.path.isfile(self.path)

    def scaledToWidth(self, w, *a):
        return self


class QIcon:
    def __init__(self, path=""):
        self.path = path


class QFile:
    ReadOnly = 1

    def __init__(self, path):
        self.path = str(path)

    def exists(self):
        return os.path.isfile(self.path)

    def open(self, mode):
        return True

    def close(self):
        pass


class QSettings:
    _store: ClassVar[dict] = {}

    def value(self, key, default=None):
        return self._store.get(key, default)

    def setValue(self, key, value):
        self._store[key] = value

    def contains(self, key):
        return key in self._store


class QTimer(QObject):
    SIGNALS = ("timeout",)

    @staticmethod
    def singleShot(msec, fn):
        _EVENTS.put(fn)


class Qt:
    WaitCursor = 3
    ArrowCursor = 0
    ShiftModifier = 0x02000000
    AlignLeft = 1


class QProcessEnvironment:
    def __init__(self, env=None):
        self.env = dict(env or {})

    @staticmethod
    def systemEnvironment():
        return QProcessEnvironment(os.environ)

    def insert(self, k, v):
        self.env[k] = str(v)

    def value(self, k, default=""):
        return self.env.get(k, default)

    def contains(self, k):
        return k in self.env

    def remove(self, k):
        self.env.pop(k, None)


class QProcess(QObject):
    """Starts the real process; output and the end are delivered on the GUI thread, like Qt."""

    SIGNALS = ("readyReadStandardOutput", "readyReadStandardError", "finished", "started", "errorOccurred")
    NotRunning, Starting, Running = 0, 1, 2
    NormalExit, CrashExit = 0, 1
    SeparateChannels, MergedChannels = 0, 1

    def __init__(self, parent=None):
        super().__init__(parent)
        self._env = None
        self._mode = self.SeparateChannels
        self._popen = None
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._state = self.NotRunning
        self._done = threading.Event()
        self._delivered = False

    def setProcessEnvironment(self, env):
        self._env = env

    def setProcessChannelMode(self, mode):
        self._mode = mode

    def start(self, program, args=()):
        self._popen = subprocess.Popen(
            [program, *args], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._mode == self.MergedChannels else subprocess.DEVNULL,
            env=self._env.env if self._env is not None else None,
        )  # fmt: skip
        self._state = self.Running
        reader = threading.Thread(target=self._read_loop, daemon=True)
        reader.start()
        threading.Thread(target=self._wait_loop, args=(reader,), daemon=True).start()

    def _read_loop(self):
        fd = self._popen.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            with self._lock:
                self._buffer += chunk
            _EVENTS.put(self.readyReadStandardOutput.emit)

    def _wait_loop(self, reader):
        self._popen.wait()
        reader.join(0.5)  # what the process wrote before it ended (a child may hold the pipe open)
        self._done.set()
        _EVENTS.put(self._deliver_finished)

    def _deliver_finished(self):
        if self._delivered:
            return
        self._delivered = True
        self._state = self.NotRunning
        self.finished.emit(self.exitCode(), self.exitStatus())

    def readAllStandardOutput(self):
        with self._lock:
            data, self._buffer = bytes(self._buffer), bytearray()
        return data

    def state(self):
        return self._state

    def processId(self):
        return self._popen.pid if self._popen is not None else 0

    def kill(self):
        if self._popen is not None and self._popen.poll() is None:
            self._popen.kill()

    def terminate(self):
        if self._popen is not None and self._popen.poll() is None:
            self._popen.terminate()

    def exitCode(self):
        rc = self._popen.returncode if self._popen is not None else 0
        return 0 if rc is None or rc < 0 else rc

    def exitStatus(self):
        rc = self._popen.returncode if self._popen is not None else 0
        return self.CrashExit if rc is not None and rc < 0 else self.NormalExit

    def waitForFinished(self, msecs=30000):
        if self._popen is None:
            return False
        if not self._done.wait(None if msecs < 0 else msecs / 1000):
            return False
        process_events()
        self._deliver_finished()
        return True


def _generic(module_name, base=None):
    """``module.__getattr__`` that makes any other widget class on first use (ctk.ctkSliderWidget...)."""
    cache = {}

    def getattr_(name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name not in cache:
            cache[name] = type(name, (base or QWidget,), {"__module__": module_name})
        return cache[name]

    return getattr_


# --------------------------------------------------------------------------------------------------
# qMRML widgets


class qMRMLWidget(QWidget):
    SIGNALS = ("mrmlSceneChanged",)


class qSlicerWidget(qMRMLWidget):
    pass


class qMRMLNodeComboBox(QWidget):
    SIGNALS = ("currentNodeChanged", "currentNodeIDChanged", "nodeAdded", "nodeActivated")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.nodeTypes = []
        self.noneEnabled = False
        self.addEnabled = False
        self.removeEnabled = False
        self.renameEnabled = False
        self.selectNodeUponCreation = True
        self._node = None

    def setMRMLScene(self, scene):
        self._scene = scene

    def currentNode(self):
        return self._node

    def currentNodeID(self):
        return self._node.GetID() if self._node is not None else ""

    def setCurrentNode(self, node):
        if node is self._node:
            return
        self._node = node
        self.currentNodeChanged.emit(node)
        self.currentNodeIDChanged.emit(self.currentNodeID())

    def setCurrentNodeID(self, nid):
        self.setCurrentNode(self._scene.GetNodeByID(nid) if nid else None)


# --------------------------------------------------------------------------------------------------
# .ui loading


def _prop_value(el):
    for child in el:
        t = child.tag
        if t == "string":
            return child.text or ""
        if t == "bool":
            return (child.text or "").strip() == "true"
        if t == "number":
            return int(child.text)
        if t == "double":
            return float(child.text)
        if t == "stringlist":
            return [s.text or "" for s in child.findall("string")]
        if t in ("enum", "set", "cstring"):
            return child.text
    return None


SIMPLE_PROPERTIES = {"text", "checked", "checkable", "value", "minimum", "maximum", "decimals", "singleStep",
                     "enabled", "visible", "toolTip", "collapsed", "nodeTypes", "noneEnabled", "addEnabled",
                     "removeEnabled", "renameEnabled", "placeholderText", "readOnly", "suffix", "specialValueText",
                     "openExternalLinks", "wordWrap"}  # fmt: skip


class QUiLoader:
    def __init__(self, classes):
        self.classes = classes

    def load(self, qfile, parent=None):
        root = ET.parse(qfile.path).getroot()
        return self._widget(root.find("widget"), None)

    def _widget(self, el, parent):
        cls = self.classes(el.get("class"))
        w = cls()
        w.name = el.get("name", "")
        if parent is not None:
            w.setParent(parent)
        ranges = {}
        for child in el:
            if child.tag == "property":
                name, value = child.get("name"), _prop_value(child)
                if child.get("stdset") == "0":
                    w.setProperty(name, value)
                elif name in ("minimum", "maximum"):
                    ranges[name] = value
                elif name in SIMPLE_PROPERTIES and value is not None:
                    setattr(w, name, value)
            elif child.tag == "item" and isinstance(w, QComboBox):
                text = next((_prop_value(p) for p in child.findall("property") if p.get("name") == "text"), "")
                w.addItem(text)
            elif child.tag == "widget":
                self._widget(child, w)
            elif child.tag == "layout":
                self._layout(child, w)
        for k, v in ranges.items():
            setattr(w, k, v)
        return w

    def _layout(self, el, owner):
        for item in el.findall("item"):
            for child in item:
                if child.tag == "widget":
                    self._widget(child, owner)
                elif child.tag == "layout":
                    self._layout(child, owner)


# --------------------------------------------------------------------------------------------------
# application


class _Markups:
    def __init__(self, logic):
        self._logic = logic
        self.jumps = []

    def logic(self):
        return self

    def JumpSlicesToLocation(self, *a):
        self.jumps.append(("location", a))

    def JumpSlicesToNthPointInMarkup(self, *a):
        self.jumps.append(("point", a))

    def __getattr__(self, name):
        return getattr(self._logic, name)


class _ModuleManager(QObject):
    SIGNALS = ("moduleAboutToBeUnloaded",)

    def module(self, name):
        return getattr(sys.modules["slicer"].modules, name.lower(), None)


class App(QObject):
    SIGNALS = ("startupCompleted",)

    def __init__(self, hs, cache):
        super().__init__()
        self._hs = hs
        self.cachePath = str(cache)
        self.temporaryPath = str(cache)
        self._moduleManager = _ModuleManager()
        self.cursor = []

    def processEvents(self, *a):
        process_events()

    def applicationLogic(self):
        return self._hs.app_logic

    def layoutManager(self):
        return None

    def moduleManager(self):
        return self._moduleManager

    def testingEnabled(self):
        return True

    def setOverrideCursor(self, c):
        self.cursor.append(c)

    def restoreOverrideCursor(self):
        if self.cursor:
            self.cursor.pop()

    def userSettings(self):
        return QSettings()

    settings = userSettings

    def moduleDocumentationUrl(self, name):
        return ""

    @staticmethod
    def translate(context, text):
        return text


LAUNCHER = textwrap.dedent("""\
    #!{python}
    # Like Slicer's PythonSlicer: a launcher that runs the real interpreter as a child and waits.
    import subprocess, sys
    sys.exit(subprocess.call([{python!r}, *sys.argv[1:]]))
    """)


class Harness:
    def __init__(self, hs, tmp):
        self.hs = hs
        self.tmp = tmp
        self.modules = {}
        self.widgets = []

    def load_module(self, name):
        """Import the module file, create its module object like Slicer's module factory does."""
        import slicer

        mod = importlib.import_module(name)
        parent = types.SimpleNamespace(path=str(REPO / name / f"{name}.py"), icon=None)
        instance = getattr(mod, name)(parent)
        setattr(slicer.modules, name.lower(), parent)
        parent.module = instance
        self.modules[name] = mod
        return mod

    def widget(self, name):
        """The module's panel, built from its .ui file the way Slicer does (setup on a qMRMLWidget)."""
        import slicer

        mod = self.modules[name]
        parent = slicer.qMRMLWidget()
        parent.setLayout(QVBoxLayout())
        parent.setMRMLScene(slicer.mrmlScene)
        parent.isEntered = True
        w = getattr(mod, name + "Widget")(parent)
        w.setup()
        w.enter()
        getattr(slicer.modules, name.lower()).widget = w
        self.widgets.append(w)
        return w

    @staticmethod
    def process_events():
        process_events()

    @staticmethod
    def wait_until(predicate, timeout=60.0):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            process_events()
            if predicate():
                return True
            time.sleep(0.02)
        process_events()
        return predicate()


class QVBoxLayout(_Layout):
    pass


class QHBoxLayout(_Layout):
    pass


class QFormLayout(_Layout):
    pass


QT_CLASSES = {c.__name__: c for c in (
    QObject, QWidget, QLabel, QPushButton, QToolButton, QCheckBox, QLineEdit, QSpinBox, QDoubleSpinBox, QSlider,
    QComboBox, QProgressBar, QTextEdit, QTextBrowser, QListWidget, QListWidgetItem, QPixmap, QIcon, QFile,
    QSettings, QTimer, Qt, QProcessEnvironment, QProcess, QVBoxLayout, QHBoxLayout, QFormLayout,
)}  # fmt: skip
MRML_CLASSES = {"qMRMLWidget": qMRMLWidget, "qSlicerWidget": qSlicerWidget, "qMRMLNodeComboBox": qMRMLNodeComboBox}
for _n in ("qMRMLSliderWidget", "qMRMLSpinBox", "qMRMLRangeWidget", "qMRMLSubjectHierarchyTreeView",
           "qMRMLSegmentsTableView", "qMRMLSubjectHierarchyComboBox"):  # fmt: skip
    MRML_CLASSES[_n] = type(_n, (QWidget,), {})

_STANDIN_MODULES = (
    "qt",
    "ctk",
    "slicer.ScriptedLoadableModule",
    "slicer.parameterNodeWrapper",
    "slicer.i18n",
    "slicer.testing",
    "slicer.logic",
    "slicer.cli",
    "slicer.packaging",
    "OsteoAI",
    "OsteoAISegment",
)
# Imported under the stand-ins (the modules' panels and logic): dropped afterwards, so no later test sees them
# bound to this harness's qt.
_PER_HARNESS_PREFIXES = ("slicer.parameterNodeWrapper", "OsteoAILib.slicer_ui")


def _per_harness(name):
    return name in _STANDIN_MODULES or name.startswith(_PER_HARNESS_PREFIXES)


@contextlib.contextmanager
def harness(tmp_path):
    """Stand-ins installed, a fresh headless scene as ``slicer.mrmlScene``, a PythonSlicer launcher on PATH."""
    import slicer
    from OsteoAILib import mrml

    saved_modules = {k: v for k, v in sys.modules.items() if _per_harness(k)}
    saved_attrs = dict(vars(slicer))
    saved_path = list(slicer.__path__)
    saved_syspath = list(sys.path)
    saved_env = os.environ.get("PATH", "")
    hs = mrml.new_scene()

    qt = types.ModuleType("qt")
    qt.__dict__.update(QT_CLASSES)
    qt.QUiLoader = lambda: QUiLoader(_class_for)
    qt.__getattr__ = _generic("qt")
    ctk = types.ModuleType("ctk")
    ctk.ctkCollapsibleButton = type("ctkCollapsibleButton", (QAbstractButton,), {"collapsed": False})
    ctk.__getattr__ = _generic("ctk")

    def _class_for(name):
        if name in QT_CLASSES:
            return QT_CLASSES[name]
        if name in MRML_CLASSES:
            return MRML_CLASSES[name]
        if name.startswith("ctk"):
            return getattr(ctk, name)
        return getattr(qt, name)

    launcher_dir = Path(tmp_path) / "launcher"
    launcher_dir.mkdir(parents=True, exist_ok=True)
    launcher = launcher_dir / "PythonSlicer"
    launcher.write_text(LAUNCHER.format(python=sys.executable))
    launcher.chmod(0o755)
    h = None
    try:
        sys.modules["qt"], sys.modules["ctk"] = qt, ctk
        for k in _STANDIN_MODULES[2:]:
            sys.modules.pop(k, None)
        for k in [k for k in sys.modules if k.startswith(_PER_HARNESS_PREFIXES)]:
            sys.modules.pop(k)
        slicer.__path__.append(str(SLICER_PYTHON / "slicer"))
        for k, v in MRML_CLASSES.items():
            setattr(slicer, k, v)
        slicer.app = App(hs, Path(tmp_path) / "cache")
        slicer.mrmlScene = hs.scene
        slicer.modules = types.SimpleNamespace(markups=_Markups(hs.logics["Markups"]))
        slicer.selfTests = {}
        for d in ("OsteoAISegment", "OsteoAI"):
            sys.path.insert(0, str(REPO / d))
        os.environ["PATH"] = f"{launcher_dir}{os.pathsep}{saved_env}"
        h = Harness(hs, Path(tmp_path))
        yield h
    finally:
        for w in h.widgets if h is not None else []:
            w.cleanup()  # cancels a running job, removes the scene observers
        os.environ["PATH"] = saved_env
        sys.path[:] = saved_syspath
        slicer.__path__[:] = saved_path
        for k in list(sys.modules):
            if _per_harness(k):
                del sys.modules[k]
        sys.modules.update(saved_modules)
        for k in [k for k in vars(slicer) if k not in saved_attrs]:
            delattr(slicer, k)
        for k, v in saved_attrs.items():
            if k != "__path__" and vars(slicer).get(k) is not v:
                setattr(slicer, k, v)
        process_events()
        hs.close()
