"""Python packages the background process needs, checked and installed the way Slicer extensions do.

Resources/requirements.txt of the OsteoAISegment module holds lower bounds (numpy and SimpleITK are
Slicer's own and never replaced); pyradiomics only for Radiomics; PyTorch through the PyTorch extension's
PyTorch Utils (it picks the CUDA build).
"""

import importlib.metadata
import importlib.util
import os
import re
import shutil
import tempfile

import slicer
from slicer.i18n import tr as _

TORCH_REQUIREMENT = ">=2.2"
IMPORT_NAMES = {"pyyaml": "yaml", "pyradiomics": "radiomics"}  # distribution -> import name, where they differ


def resourcesDir():
    """The OsteoAISegment module's Resources folder (installed: beside the module file; else the source tree)."""
    module = getattr(getattr(slicer, "modules", None), "osteoaisegment", None)
    if module is not None and getattr(module, "path", None):
        d = os.path.join(os.path.dirname(module.path), "Resources")
        if os.path.isfile(os.path.join(d, "requirements.txt")):
            return d
    lib = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(os.path.dirname(lib), "OsteoAISegment", "Resources")


def requirementFiles(radiomics=False):
    d = resourcesDir()
    names = ["requirements.txt"] + (["requirements-radiomics.txt"] if radiomics else [])
    return [os.path.join(d, name) for name in names]


def readRequirements(path):
    """Requirement strings of a requirements file (comments and blank lines left out)."""
    with open(path) as f:
        return [line.split("#", 1)[0].strip() for line in f if line.split("#", 1)[0].strip()]


def requirementName(req):
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]


def _missing(requirements):
    """The requirements not satisfied here: ``slicer.packaging.pip_check`` (versions too) where this Slicer
    has it, else whether the package imports."""
    try:
        from slicer.packaging import pip_check
    except ImportError:  # Slicer before slicer.packaging

        def pip_check(req):
            name = requirementName(req).lower()
            return importlib.util.find_spec(IMPORT_NAMES.get(name, name)) is not None

    return [req for req in requirements if not pip_check(req)]


def missingDependencies(radiomics=False):
    """Names of the missing packages (``torch`` first); pyradiomics only when ``radiomics``."""
    missing = ["torch"] if importlib.util.find_spec("torch") is None else []
    return missing + [requirementName(r) for f in requirementFiles(radiomics) for r in _missing(readRequirements(f))]


def installDependencies(askConfirmation=True, radiomics=False):
    """Install what is missing: PyTorch through PyTorch Utils, the rest through ``slicer.packaging.pip_ensure``
    (the user is asked and sees the progress), with a constraints file that keeps Slicer's numpy and
    SimpleITK as they are. Raises RuntimeError with one line when something stays missing."""
    if importlib.util.find_spec("torch") is None:
        try:
            import PyTorchUtils

            torchLogic = PyTorchUtils.PyTorchUtilsLogic()
            if not torchLogic.torchInstalled():
                torchLogic.installTorch(askConfirmation=askConfirmation, torchVersionRequirement=TORCH_REQUIREMENT)
        except ImportError:
            raise RuntimeError(
                _(
                    "OsteoAI needs PyTorch: install the PyTorch extension (Extensions Manager), restart Slicer, "
                    "then press Install again."
                )
            ) from None
    todo = _missing([r for f in requirementFiles(radiomics) for r in readRequirements(f)])
    if todo:
        constraints = os.path.join(tempfile.mkdtemp(prefix="osteoai-constraints-"), "constraints.txt")
        with open(constraints, "w") as f:
            for dist in ("numpy", "SimpleITK"):
                try:
                    f.write(f"{dist}=={importlib.metadata.version(dist)}\n")
                except importlib.metadata.PackageNotFoundError:
                    pass
        try:
            from slicer.packaging import pip_ensure
        except ImportError:  # Slicer before slicer.packaging
            pip_ensure = None
        try:
            if pip_ensure is not None:
                pip_ensure(todo, constraints=constraints, prompt_install=askConfirmation, requester="OsteoAI")
            else:  # ask, then pip
                if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                    _("OsteoAI needs these Python packages. Install them now?") + "\n\n" + "\n".join(todo)
                ):
                    raise RuntimeError(_("User declined package installation"))
                slicer.util.pip_install(todo + ["-c", constraints])
        finally:
            shutil.rmtree(os.path.dirname(constraints), ignore_errors=True)
    still = missingDependencies(radiomics=radiomics)
    if still:
        raise RuntimeError(
            _("Missing Python packages: {packages} (press Install in Dependencies)").format(packages=", ".join(still))
        )
