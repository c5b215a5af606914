"""Sphinx extension of the book: the API reference of every tarlib module, and one fix of the theme's scripts.

The module list is not written down anywhere: the directive asks :mod:`pkgutil` for the
modules of the installed ``tarlib`` package and its sub-packages when the book is built, so
a module added later appears in the reference without editing the book.  Each module
becomes a section documented by ``sphinx.ext.autodoc`` with all its public members, under
its layer: the library or the study, as the import contracts of ``pyproject.toml`` say.

The fix: sphinx-thebe (loaded by Jupyter Book) adds its inline ``const THEBE_JS_URL``
script twice to every page, and the second copy throws an uncaught SyntaxError in the
browser (tests/test_browser.py found it); :func:`drop_repeated_scripts` keeps the first.

The syllabus's table: the ``notebook-times`` directive renders ``book/notebook_times.json``
(written by ``make times``, tools/notebook_times.py) as one row per notebook, with its title and
its measured run times in fast and full mode, and the date and commit of each measurement.

And one record: :func:`write_notebook_times` saves how long each notebook took to execute
during the build to ``_build/notebook_times.json`` (CI prints it with tools/notebook_times.py).
For that, :func:`record_cell_timing` has myst-nb's executor keep nbclient's per-cell
timestamps; a pause of more than ``MAX_IDLE_S`` between two cells (kernel and client both
waiting, as notebook 07 did for the whole cell timeout) is a build warning, so ``-W`` fails.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import re
import tomllib
from datetime import datetime
from pathlib import Path
from types import ModuleType

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_refnode, nested_parse_with_titles

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
NOTEBOOK_TIMES = PYPROJECT.parent / "book" / "notebook_times.json"
LAYERS = ("library", "study")
logger = logging.getLogger(__name__)
MAX_IDLE_S = 15.0  # longest allowed pause between one cell's end and the next cell's start


def modules(package: str = "tarlib") -> list[str]:
    """The public modules of ``package`` and of its sub-packages (no part of the name starting with ``_``), sorted."""
    pkg = importlib.import_module(package)
    found = pkgutil.walk_packages(pkg.__path__, f"{package}.")
    return sorted(m.name for m in found if not any(part.startswith("_") for part in m.name.split(".")))


def layer(module: str) -> str:
    """``"study"`` for the modules that the library must not import (``[tool.importlinter]``), else ``"library"``."""
    contract = next(c for c in tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
                    if c["id"] == "library")
    packages = {name.removesuffix(".**") for name in contract["forbidden_modules"]}
    return "study" if any(module == p or module.startswith(f"{p}.") for p in packages) else "library"


def public_names(module: ModuleType) -> list[str]:
    """The names a reader can use from ``module``: its ``__all__``, else every name that its
    source defines at top level (``def``, ``class``, assignment) without a leading ``_``."""
    if hasattr(module, "__all__"):
        return sorted(name for name in module.__all__ if not name.startswith("_"))
    names = set()
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return sorted(name for name in names if not name.startswith("_"))


def rst(module: str) -> list[str]:
    """reStructuredText of one module's section: autodoc of exactly its :func:`public_names`.

    Classes and functions go through ``automodule``; constants through ``autodata``, since
    ``automodule`` skips module-level data that has no doc comment.
    """
    mod = importlib.import_module(module)
    code, data = [], []
    for name in public_names(mod):
        obj = getattr(mod, name)
        is_code = inspect.isclass(obj) or inspect.isroutine(obj) or hasattr(obj, "__wrapped__")
        (code if is_code else data).append(name)
    lines = [module, "~" * len(module), "", f".. automodule:: {module}"]
    if code:
        lines += [f"   :members: {', '.join(code)}", "   :undoc-members:", "   :show-inheritance:"]
    lines.append("")
    for name in data:
        lines += [f".. autodata:: {module}.{name}"]
        if len(repr(getattr(mod, name))) > 80:
            lines.append("   :no-value:")
        lines.append("")
    return lines


def all_rst(of: str) -> list[str]:
    """The reference of one layer (``"library"``: the package's own names first, then its modules; ``"study"``)."""
    if of not in LAYERS:
        raise ValueError(f"tarlib-api takes one of {LAYERS}, got {of!r}")
    names = [m for m in ["tarlib", *modules()] if layer(m) == of]
    return [line for module in names for line in rst(module)]


# The docstrings are plain text with maths such as |Ax| or paths such as results/*.md;
# reStructuredText would read |...| as a substitution and /* as the start of emphasis.
# An inline literal glued to a letter (``A.scale``²) also needs an escaped space.
_LITERAL = re.compile(r"(``.+?``|`[^`]+`)")
_BARE_STAR = re.compile(r"(?<=[\w/])\*(?=\w|\.\w)")
_BEFORE_MARKUP = set(" \t'\"([{<-/:‘“«")
_AFTER_MARKUP = set(" \t'\")]}>-/:.,;!?\\’”»")


def escape_plain_text(lines: list[str]) -> None:
    """Escape ``|``, in-word ``*`` and glued inline markup, outside literals, in place."""
    for i, line in enumerate(lines):
        parts = _LITERAL.split(line)
        for k in range(0, len(parts), 2):
            parts[k] = _BARE_STAR.sub(r"\\*", parts[k].replace("|", r"\|"))
        for k in range(1, len(parts), 2):
            if parts[k - 1] and parts[k - 1][-1] not in _BEFORE_MARKUP:
                parts[k - 1] += "\\ "
            if k + 1 < len(parts) and parts[k + 1] and parts[k + 1][0] not in _AFTER_MARKUP:
                parts[k + 1] = "\\ " + parts[k + 1]
        lines[i] = "".join(parts)


def resolve_short_name(app: Sphinx, env, node, contnode):
    """``missing-reference``: a bare name such as ``RayTransform`` or ``LinearGaussian.risk``
    in a docstring resolves to the one documented tarlib object whose full name ends with it."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    objects = env.get_domain("py").objects
    matches = [name for name in objects if name.startswith("tarlib.") and name.endswith(f".{target}")]
    if len(matches) != 1:
        return None
    entry = objects[matches[0]]
    return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, matches[0])


def process_docstring(app: Sphinx, what: str, name: str, obj: object, options: dict, lines: list[str]) -> None:
    """Drop the type's docstring that autodoc shows for an undocumented constant; escape plain text."""
    if what == "data" and "\n".join(lines).strip() == inspect.cleandoc(type(obj).__doc__ or ""):
        lines.clear()
    escape_plain_text(lines)


class TarlibAPI(SphinxDirective):
    """``tarlib-api LAYER``: one autodoc section per tarlib module of the layer (library or study)."""

    has_content = False
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        lines = StringList()
        for line in all_rst(self.arguments[0]):
            lines.append(line, "<tarlib-api>")
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, lines, container)
        return container.children


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not measured"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def notebook_times_table(record: dict, notebooks: Path) -> list[str]:
    """Markdown lines of the syllabus's table: one row per notebook of ``notebooks``, its title (first
    heading) and its fast- and full-mode times from ``record`` (book/notebook_times.json), then the sums."""
    fast, full = (record.get(mode, {}).get("notebooks", {}) for mode in ("fast", "full"))
    lines = ["| notebook | fast mode | full size |", "|---|---:|---:|"]
    for path in sorted(notebooks.glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        title = "".join(cells[0]["source"]).splitlines()[0].lstrip("# ").strip()
        lines.append(f"| {{doc}}`{title} </notebooks/{path.stem}>` | {_duration(fast.get(path.stem))} "
                     f"| {_duration(full.get(path.stem))} |")
    lines.append(f"| **all notebooks** | **{_duration(sum(fast.values()) or None)}** "
                 f"| **{_duration(sum(full.values()) or None)}** |")
    for mode, label in (("fast", "Fast mode"), ("full", "Full size")):
        if mode in record:
            m = record[mode]
            lines += ["", f"{label}: {m['source']}, {m['machine']}, {m['date']} at commit `{m['commit']}`."]
    return lines


class NotebookTimes(SphinxDirective):
    """``notebook-times``: the table of every notebook's run times, from book/notebook_times.json."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(str(NOTEBOOK_TIMES))
        if not NOTEBOOK_TIMES.is_file():
            raise self.error(f"no {NOTEBOOK_TIMES}: run `make times`")
        lines = notebook_times_table(json.loads(NOTEBOOK_TIMES.read_text()), PYPROJECT.parent / "notebooks")
        container = nodes.section()
        container.document = self.state.document
        self.state.nested_parse(StringList(lines, "<notebook-times>"), self.content_offset, container)
        return container.children


def drop_repeated_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: object) -> None:
    """Keep one copy of each script of a page (``html-page-context``)."""
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (script.filename or "", tuple(sorted(script.attributes.items())))  # inline: None or ""
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def record_cell_timing(app: Sphinx, config: object) -> None:
    """Have myst-nb's executor record nbclient's timestamps in each executed cell (``config-inited``).

    myst-nb calls jupyter-cache's ``single_nb_execution`` without ``record_timing``; the
    timestamps land in ``cell.metadata.execution`` of ``_build/jupyter_execute/**.ipynb``.
    """
    from myst_nb.core.execute import direct

    run = direct.single_nb_execution
    if getattr(run, "records_timing", False):
        return

    def single_nb_execution(*args, **kwargs):
        return run(*args, **{**kwargs, "record_timing": True})

    single_nb_execution.records_timing = True
    direct.single_nb_execution = single_nb_execution


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def idle_gaps(notebook: dict) -> list[tuple[int, float]]:
    """(index of a code cell, seconds from the previous code cell's end to its start), for every
    cell after the first that carries nbclient's timestamps (``iopub.status.busy`` / ``.idle``)."""
    timed = [(i, cell["metadata"]["execution"]) for i, cell in enumerate(notebook["cells"])
             if "iopub.status.busy" in cell.get("metadata", {}).get("execution", {})]
    return [(i, (_time(now["iopub.status.busy"]) - _time(before["iopub.status.idle"])).total_seconds())
            for (_, before), (i, now) in zip(timed, timed[1:])]


def write_notebook_times(app: Sphinx, exception: Exception | None) -> None:
    """``_build/notebook_times.json``: seconds each notebook executed in this build and its longest
    pause between cells (``build-finished``); a pause over ``MAX_IDLE_S`` is a warning."""
    from myst_nb.sphinx_ import NbMetadataCollector

    times = {}
    for docname in sorted(app.env.found_docs):
        data = NbMetadataCollector.get_exec_data(app.env, docname)
        if data and data.get("method") != "off" and data.get("runtime") is not None:
            times[docname] = {"seconds": round(data["runtime"], 2), "succeeded": data["succeeded"]}
            executed = Path(app.outdir).parent / "jupyter_execute" / f"{docname}.ipynb"
            gaps = idle_gaps(json.loads(executed.read_text())) if executed.is_file() else []
            times[docname]["longest_pause_s"] = round(max((s for _, s in gaps), default=0.0), 2)
            for cell, seconds in gaps:
                if seconds > MAX_IDLE_S:
                    logger.warning(f"{seconds:.0f} s between cell {cell} and the code cell before it (at most "
                                   f"{MAX_IDLE_S:.0f} s): did the client wait out the cell timeout?", location=docname)
    if times:
        path = Path(app.outdir).parent / "notebook_times.json"
        path.write_text(json.dumps({"source": "jupyter-book build", "notebooks": times}, indent=2) + "\n")


def setup(app: Sphinx) -> dict:
    app.add_directive("tarlib-api", TarlibAPI)
    app.add_directive("notebook-times", NotebookTimes)
    app.connect("autodoc-process-docstring", process_docstring)
    app.connect("missing-reference", resolve_short_name)
    app.connect("html-page-context", drop_repeated_scripts)
    app.connect("config-inited", record_cell_timing)
    app.connect("build-finished", write_notebook_times)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
