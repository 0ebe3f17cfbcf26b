"""Imports run one way (README, "Where each part of the paper lives"): scripts -> application -> ``modules/`` ->
``loss.py`` / ``darknet/`` / ``data/`` -> ``models/`` / ``boxes.py``, and a file-format module knows nothing of
Lightning or Hydra.

Every file under ``src/yolo9000`` and every script in ``src/*.py`` is parsed with :mod:`ast`; every import counts,
at any depth (module level, inside a function, under ``if TYPE_CHECKING:`` -- an annotation is a dependency too, and
none of the package's needs an exemption), relative ones resolved against the file's package. An import of a
``yolo9000`` module must not go to a higher layer than the importing file's (:data:`LAYERS`), and the units of the
table (a package or a top-level module) must not import each other in a cycle; inside one unit (``data/``'s
``records.py`` <-> ``image_io.py``) anything goes. Importing ``a.b`` also runs ``a/__init__.py``; that implicit edge
is not counted (``tests/test_darknet.py`` checks by a real import that ``yolo9000.darknet`` loads neither Lightning
nor Hydra).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "yolo9000"

# Layers, top to bottom: a module may import its own layer and the layers below it. Each entry is a module or a
# package (all of its submodules); a module's layer is its longest matching entry. Every file must have one.
LAYERS: dict[str, tuple[str, ...]] = {
    # entry points (src/*.py): run by the user / Hydra; nothing imports them
    "scripts": (
        "anchors",
        "bench",
        "convert",
        "detect",
        "eval",
        "export",
        "make_crops",
        "report",
        "train",
        "wordtree",
    ),
    # what the scripts share: Hydra environment and config -> objects, checkpoints, metrics files, run folders and
    # multiruns, sweep reports, the predict API and its tradeoff sweep, the trainer's callbacks and loggers.
    # ``yolo9000/__init__.py`` re-exports the predict API (lazily)
    "application": (
        "yolo9000",
        "yolo9000.environment",
        "yolo9000.build",
        "yolo9000.checkpoints",
        "yolo9000.results",
        "yolo9000.api",
        "yolo9000.tradeoff",
        "yolo9000.report",
        "yolo9000.run_folder",
        "yolo9000.multirun",
        "yolo9000.loggers",
        "yolo9000.callbacks",
    ),
    # the LightningModules (detector, classifier, their shared base, schedules, pretrained backbones)
    "modules": ("yolo9000.modules",),
    # what a module is made of, no Lightning module in sight: the loss, darknet interop, the data pipeline,
    # decode / NMS, evaluation, WordTree, anchors, speed switches, pictures and the result-file writers
    "components": (
        "yolo9000.loss",
        "yolo9000.darknet",
        "yolo9000.data",
        "yolo9000.postprocess",
        "yolo9000.region_decode",
        "yolo9000.metrics",
        "yolo9000.voc_eval",
        "yolo9000.wordtree",
        "yolo9000.wordnet_tree",
        "yolo9000.anchors",
        "yolo9000.speed",
        "yolo9000.viz",
        "yolo9000.submission",
    ),
    # the networks, the box geometry and text-file decoding: import only torch and each other's files
    "models": ("yolo9000.models", "yolo9000.boxes", "yolo9000.text_io"),
}

# (importing module, imported module) -> why an upward import is left as it is. Empty: none is.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}

# file formats (darknet's cfg / weights / tree files, annotation formats, images and videos, result files): no
# Lightning, no Hydra, in their own source nor in any yolo9000 module they import
FILE_FORMATS: tuple[str, ...] = (
    "yolo9000.darknet",
    "yolo9000.darknet.cfg",
    "yolo9000.darknet.net",
    "yolo9000.darknet.native",
    "yolo9000.darknet.weights",
    "yolo9000.data.records",
    "yolo9000.data.splits",
    "yolo9000.data.image_io",
    "yolo9000.data.video",
    "yolo9000.data.voc",
    "yolo9000.data.coco",
    "yolo9000.data.yolo_txt",
    "yolo9000.data.yolo_labels",
    "yolo9000.data.csv_boxes",
    "yolo9000.data.labelme",
    "yolo9000.data.cvat",
    "yolo9000.data.tree_labels",
    "yolo9000.wordtree",
    "yolo9000.wordnet_tree",
    "yolo9000.submission",
    "yolo9000.text_io",
)
TRAINING_STACK = ("pytorch_lightning", "lightning", "lightning_fabric", "hydra", "omegaconf")

ORDER = list(LAYERS)


@dataclass(frozen=True)
class Edge:
    importer: str
    file: Path
    line: int
    statement: str
    imported: str  # a module: a yolo9000 one, a script's name, or a third-party module

    def where(self) -> str:
        return f"{self.file.relative_to(SRC.parent)}:{self.line}: `{self.statement}`"


def _modules() -> dict[str, Path]:
    """Module name -> file, for the package and the scripts."""
    found = {p.stem: p for p in SRC.glob("*.py")}
    for p in (SRC / PACKAGE).rglob("*.py"):
        parts = p.relative_to(SRC).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return found


MODULES = _modules()
SCRIPTS = {name for name, p in MODULES.items() if p.parent == SRC}


def _imports(name: str, path: Path) -> Iterator[Edge]:
    """Every import in ``path``, at any depth, resolved to module names (``from m import x`` is ``m.x`` where that is
    a module of the package, else ``m``)."""
    is_package = path.name == "__init__.py"
    package = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                assert node.level <= len(package), f"{path}:{node.lineno}: relative import above the package"
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in dict.fromkeys(targets):
            yield Edge(name, path, node.lineno, ast.unparse(node), target)


EDGES = [e for name, path in sorted(MODULES.items()) for e in _imports(name, path)]


def _internal(edge: Edge) -> bool:
    top = edge.imported.split(".")[0]
    return top == PACKAGE or (edge.imported in SCRIPTS and edge.importer not in SCRIPTS)


def unit_of(module: str) -> str | None:
    """The :data:`LAYERS` entry a module belongs to (``yolo9000`` itself matches only the package's __init__)."""
    best = None
    for entries in LAYERS.values():
        for entry in entries:
            hit = module == entry or (entry != PACKAGE and module.startswith(entry + "."))
            if hit and (best is None or len(entry) > len(best)):
                best = entry
    return best


def layer_of(module: str) -> str:
    unit = unit_of(module)
    assert unit is not None, f"{module} has no layer: add it to LAYERS in tests/test_import_layers.py"
    return next(layer for layer, entries in LAYERS.items() if unit in entries)


def test_table_covers_every_file_once() -> None:
    entries = [e for es in LAYERS.values() for e in es]
    assert len(entries) == len(set(entries)), "an entry is in two layers"
    assert sorted(LAYERS["scripts"]) == sorted(SCRIPTS), "LAYERS['scripts'] must list exactly src/*.py"
    unknown = [e for e in entries if e not in MODULES]
    assert not unknown, f"LAYERS names modules that do not exist: {unknown}"
    missing = [m for m in MODULES if unit_of(m) is None]
    assert not missing, f"modules without a layer (add them to LAYERS in tests/test_import_layers.py): {missing}"


def test_imports_run_one_way() -> None:
    upward, used = [], set()
    for e in EDGES:
        if not _internal(e):
            continue
        assert e.imported in MODULES, f"{e.where()}: {e.imported} is not a module of src/"
        have, want = layer_of(e.importer), layer_of(e.imported)
        if ORDER.index(want) < ORDER.index(have):
            if (e.importer, e.imported) in ALLOWED_UPWARD:
                used.add((e.importer, e.imported))
                continue
            upward.append(
                f"{e.where()} imports {e.imported} ({want}) into {e.importer} ({have}): {want} is above {have}"
            )
    assert not upward, "imports going up a layer:\n" + "\n".join(upward)
    stale = sorted(set(ALLOWED_UPWARD) - used)
    assert not stale, f"ALLOWED_UPWARD entries no longer needed: {stale}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_units() -> None:
    """Same-layer imports are fine, a cycle between two units of the table (``data/`` <-> ``loss.py``) is not."""
    graph: dict[str, set[str]] = {}
    by_pair: dict[tuple[str, str], list[Edge]] = {}
    for e in EDGES:
        if not _internal(e):
            continue
        a, b = unit_of(e.importer), unit_of(e.imported)
        assert a is not None and b is not None, e.where()
        if a != b:
            graph.setdefault(a, set()).add(b)
            by_pair.setdefault((a, b), []).append(e)
    problems = []
    for component in _cycles(graph):
        # one shortest way round, from the component's first unit back to it, an import per step
        start, paths = component[0], {component[0]: [component[0]]}
        todo, loop = [start], None
        while todo and loop is None:
            v = todo.pop(0)
            for w in sorted(graph[v] & set(component)):
                if w == start:
                    loop = paths[v] + [start]
                    break
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    todo.append(w)
        assert loop is not None
        steps = [f"  {by_pair[a, b][0].where()} ({a} -> {b})" for a, b in zip(loop, loop[1:], strict=False)]
        problems.append(f"cycle between {', '.join(component)}, e.g.:\n" + "\n".join(steps))
    assert not problems, "\n".join(problems)


def _training_stack(edge: Edge) -> bool:
    return edge.imported.split(".")[0] in TRAINING_STACK


def test_file_formats_know_nothing_of_lightning_or_hydra() -> None:
    """Own source at any depth, and every yolo9000 module reached through explicit imports (not a parent package's
    ``__init__``, which only runs)."""
    for name in FILE_FORMATS:
        assert name in MODULES, f"FILE_FORMATS names {name}, which does not exist"
    by_module: dict[str, list[Edge]] = {}
    for e in EDGES:
        by_module.setdefault(e.importer, []).append(e)
    reached: dict[Edge, list[list[str]]] = {}  # an import of Lightning / Hydra -> the routes to it
    for name in FILE_FORMATS:
        seen, todo = {name: [name]}, [name]
        while todo:
            current = todo.pop(0)
            for e in by_module.get(current, []):
                if _training_stack(e):
                    reached.setdefault(e, []).append(seen[current])
                elif _internal(e) and e.imported not in seen:
                    seen[e.imported] = [*seen[current], e.imported]
                    todo.append(e.imported)
    problems = [
        f"{e.where()} imports {e.imported}, reached from file-format module(s) {', '.join(r[0] for r in routes)}"
        f" (e.g. {' -> '.join(min(routes, key=len))})"
        for e, routes in sorted(reached.items(), key=lambda item: (str(item[0].file), item[0].line))
    ]
    assert not problems, "file-format modules reaching Lightning / Hydra:\n" + "\n".join(problems)
