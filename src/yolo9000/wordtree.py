"""WordTree (paper Section 3, "Hierarchical classification"): darknet's tree, names, labels and map files (read and
validated), sibling groups, the hierarchical softmax, absolute probabilities and darknet's top-down decode.

Files (pjreddie/darknet ``data/``), one entry a line:

* tree (``9k.tree``, darknet ``read_tree``): ``<wordnet id> <parent line index>``, -1 for a root (a line with the
  id alone is a root, as darknet's ``sscanf`` reads it). A parent precedes its children and siblings are
  consecutive lines, so a sibling group is a run of lines with the same parent (the roots are the first group);
  the softmax is taken per group.
* names (``9k.names``): a human-readable name per node; labels (``9k.labels``): a WordNet id per node.
* map (``coco9k.map``, ``inet9k.map``, darknet ``read_map``): the tree node of each class of a label set.

Malformed files are rejected with ``<file>:<line>: <what is wrong>``. Trailing blank lines are ignored; a blank line
inside a file is an error (darknet would read it as a nameless node or as class 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

Where = Callable[[int], str]  # 0-based entry index -> message prefix ("file:line" or "WordTree node i")


def _lines(path: str | Path, what: str) -> list[str]:
    """The lines of ``path`` (trailing blank lines dropped); a blank line inside the file is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for i, line in enumerate(lines):
        if not line.strip():
            raise ValueError(f"{path}:{i + 1}: empty line (one {what} entry a line expected)")
    return lines


def _check_parents(parents: Sequence[int], where: Where) -> None:
    """darknet's tree invariants: every parent is -1 or an earlier node, and siblings are consecutive."""
    if not parents:
        raise ValueError(f"{where(0)}: no tree nodes")
    n = len(parents)
    last_start: dict[int, int] = {}  # parent -> first line of its (single) run of children
    prev = None
    for i, p in enumerate(parents):
        if p < -1 or p >= n:
            raise ValueError(f"{where(i)}: parent index {p} out of range (-1 or 0..{n - 1}, the tree has {n} nodes)")
        if p >= i:
            raise ValueError(f"{where(i)}: parent index {p} is not before its child (node {i}); darknet's order")
        if p != prev:
            if p in last_start:
                kind = "roots" if p < 0 else f"children of node {p}"
                raise ValueError(
                    f"{where(i)}: siblings not consecutive: the {kind} started at node {last_start[p]} and another "
                    "group came in between"
                )
            last_start[p] = i
            prev = p


def read_entries(path: str | Path, num_nodes: int | None, what: str) -> list[str]:
    """One entry a line (a names or labels file): exactly ``num_nodes`` non-empty lines when given.

    ``what`` = "name" keeps each line's inner spaces (names have spaces; the ends are stripped: "RBC " is "RBC");
    otherwise a line must be one token (a WordNet id).
    """
    lines = _lines(path, what)
    if what != "name":
        for i, line in enumerate(lines):
            if len(line.split()) != 1:
                raise ValueError(f"{path}:{i + 1}: expected one {what} (no spaces), got {line!r}")
    if num_nodes is not None and len(lines) != num_nodes:
        if len(lines) < num_nodes:
            raise ValueError(f"{path}:{len(lines) + 1}: missing {what} for node {len(lines)} ({num_nodes} expected)")
        raise ValueError(f"{path}:{num_nodes + 1}: extra {what}: the tree has {num_nodes} nodes")
    return [line.strip() for line in lines]  # a name's inner spaces kept; a stray trailing one is no part of it


def read_map(path: str | Path, num_nodes: int | None = None) -> list[int]:
    """darknet ``read_map``: one tree node index a line (class j of the label set -> node). With ``num_nodes``,
    every index must be in ``0..num_nodes - 1``."""
    out = []
    for i, line in enumerate(_lines(path, "map")):
        try:
            v = int(line.strip())
        except ValueError as e:
            raise ValueError(f"{path}:{i + 1}: map entry {line!r} is not an integer node index") from e
        if v < 0 or (num_nodes is not None and v >= num_nodes):
            hi = f"0..{num_nodes - 1}" if num_nodes is not None else ">= 0"
            raise ValueError(f"{path}:{i + 1}: map entry {v} out of range ({hi})")
        out.append(v)
    return out


class WordTree:
    """A WordTree with its sibling groups.

    Attributes:
        n: number of nodes; num_groups: G; depth: D (a root has depth 1).
        names: (n,) human names (the names file; else the tree file's ids; else "0".."n-1").
        wnids: (n,) WordNet ids (the labels file; else the tree file's ids; else the names).
        parent: (n,) LongTensor, parent node, -1 at a root.
        group: (n,) LongTensor, sibling group of each node.
        group_offset, group_size: (G,) LongTensor, first node and size of each group (contiguous runs).
        child_group: (n,) LongTensor, the group holding a node's children, -1 for a leaf.
        paths: (n, D) LongTensor, each node's path to the root (node, parent, ...), padded with -1.
    """

    def __init__(
        self, parents: Sequence[int], names: Sequence[str] | None = None, wnids: Sequence[str] | None = None
    ) -> None:
        parents = [int(p) for p in parents]
        _check_parents(parents, lambda i: f"WordTree node {i}")
        n = len(parents)
        for what, seq in (("names", names), ("wnids", wnids)):
            if seq is not None and len(seq) != n:
                raise ValueError(f"WordTree: {len(seq)} {what} for {n} nodes")
        parent = torch.tensor(parents, dtype=torch.long)
        starts = torch.ones(n, dtype=torch.bool)
        starts[1:] = parent[1:] != parent[:-1]
        self.n = n
        self.source: str | None = None  # the tree file it was read from (:meth:`from_file`), for messages
        self.names = list(names) if names is not None else [str(i) for i in range(n)]
        self.wnids = list(wnids) if wnids is not None else list(self.names)
        self.parent = parent
        self.group = torch.cumsum(starts.long(), 0) - 1
        self.group_offset = torch.nonzero(starts).flatten()
        self.group_size = torch.diff(torch.cat([self.group_offset, torch.tensor([n])]))
        self.num_groups = len(self.group_offset)
        self.child_group = torch.full((n,), -1, dtype=torch.long)
        has_parent = parent >= 0
        self.child_group[parent[has_parent]] = self.group[has_parent]
        # Paths to the root: (n, D), built level by level.
        cols = [torch.arange(n)]
        while bool((cols[-1] >= 0).any()):
            prev = cols[-1]
            cols.append(torch.where(prev >= 0, parent[prev.clamp_min(0)], prev))
        self.paths = torch.stack(cols[:-1], dim=1)
        self.depth = self.paths.shape[1]
        self._cache: dict[tuple[str, str], tuple] = {}

    @classmethod
    def from_file(
        cls, path: str | Path, names_file: str | Path | None = None, labels_file: str | Path | None = None
    ) -> WordTree:
        """Read a darknet tree file, optionally with a names file (``9k.names``) and a labels file (``9k.labels``),
        one entry per node in the tree's order. Malformed files raise ``ValueError("<file>:<line>: ...")``."""
        ids, parents = [], []
        for i, line in enumerate(_lines(path, "WordTree")):
            parts = line.split()
            if len(parts) > 2:
                raise ValueError(f"{path}:{i + 1}: expected '<id> <parent index>', got {line!r}")
            try:
                parents.append(int(parts[1]) if len(parts) > 1 else -1)
            except ValueError as e:
                raise ValueError(f"{path}:{i + 1}: parent index {parts[1]!r} is not an integer") from e
            ids.append(parts[0])
        _check_parents(parents, lambda i: f"{path}:{i + 1}")
        names = read_entries(names_file, len(ids), "name") if names_file is not None else ids
        wnids = read_entries(labels_file, len(ids), "label") if labels_file is not None else ids
        tree = cls(parents, names, wnids)
        tree.source = str(path)
        return tree

    def to_file(self, path: str | Path) -> None:
        """Write darknet's tree file (``<id> <parent index>`` a line, the ids :attr:`wnids`): what
        :meth:`from_file` reads back into this tree's structure and ids. ValueError for an id holding whitespace
        (a line would not read back)."""
        spaced = [w for w in self.wnids if not w or any(c.isspace() for c in w)]
        if spaced:
            raise ValueError(f"{path}: node ids {spaced[:3]} are empty or hold whitespace: no darknet tree line")
        Path(path).write_text(
            "".join(f"{w} {p}\n" for w, p in zip(self.wnids, self.parent.tolist(), strict=True)), encoding="utf-8"
        )

    def read_map(self, path: str | Path) -> torch.Tensor:
        """A darknet map file (``coco9k.map``) checked against this tree: (K,) LongTensor of node indices."""
        return torch.tensor(read_map(path, self.n), dtype=torch.long)

    def map_labels(self, labels: Sequence[str], map_file: str | Path | None = None) -> torch.Tensor:
        """The tree node of each label of a label set (COCO's names, ImageNet wnids, any node names).

        With ``map_file``: darknet's map (one node a label, in the label set's order; counts must agree). Without:
        each label is looked up by WordNet id, then by name; a name held by several nodes is ambiguous.

        Returns:
            (len(labels),) LongTensor of node indices.
        Raises:
            ValueError listing every label not found (or ambiguous).
        """
        if map_file is not None:
            nodes = self.read_map(map_file)
            if len(nodes) != len(labels):
                raise ValueError(f"{map_file}: {len(nodes)} map entries for {len(labels)} labels")
            return nodes
        by_wnid = {w: i for i, w in reversed(list(enumerate(self.wnids)))}
        by_name: dict[str, list[int]] = {}
        for i, name in enumerate(self.names):
            by_name.setdefault(name, []).append(i)
        out, missing, ambiguous = [], [], []
        for label in labels:
            if label in by_wnid:
                out.append(by_wnid[label])
            elif len(by_name.get(label, ())) == 1:
                out.append(by_name[label][0])
            else:
                (ambiguous if label in by_name else missing).append(label)
        if missing or ambiguous:
            parts = [f"{len(missing)} not found: {missing[:20]}"] if missing else []
            parts += [f"{len(ambiguous)} ambiguous names (use wnids or a map): {ambiguous[:20]}"] if ambiguous else []
            source = getattr(self, "source", None)  # a tree unpickled from an older version has none
            where = f" {source}" if source else ""
            raise ValueError(f"labels not in the WordTree{where} ({self.n} nodes): " + "; ".join(parts))
        return torch.tensor(out, dtype=torch.long)

    # ------------------------------------------------------------------ per-group maths, node-major layout
    def _node_major(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
        """(..., n) -> (n, M) contiguous (a node's values for all rows together) and the leading shape."""
        if x.shape[-1] != self.n:
            raise ValueError(f"expected (..., {self.n}) values of the WordTree nodes, got {tuple(x.shape)}")
        return x.reshape(-1, self.n).t().contiguous(), x.shape[:-1]

    def _restore(self, y: torch.Tensor, lead: torch.Size) -> torch.Tensor:
        """(n, M) -> (..., n): a view (non-contiguous when M > 1), no copy."""
        return y.t().reshape(*lead, self.n)

    def _buckets(self, device: torch.device) -> tuple[list[tuple[int, int, torch.Tensor]], torch.Tensor]:
        """Groups by size: [(size s, count k, nodes (k * s,) group by group)], and the inverse permutation (n,)."""
        key, cache = ("buckets", str(device)), self.__dict__.setdefault("_cache", {})
        if key not in cache:
            buckets = []
            for s in self.group_size.unique().tolist():
                g = torch.nonzero(self.group_size == s).flatten()
                nodes = (self.group_offset[g].unsqueeze(1) + torch.arange(s)).flatten()
                buckets.append((s, len(g), nodes.to(device)))
            inv = torch.argsort(torch.cat([b[2].cpu() for b in buckets])).to(device)
            cache[key] = (buckets, inv)
        return cache[key]

    def _levels(self, device: torch.device) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        """Nodes by depth: [(nodes (L_d,), each one's parent position in the level above (L_d,))], inverse (n,)."""
        key, cache = ("levels", str(device)), self.__dict__.setdefault("_cache", {})
        if key not in cache:
            depth = (self.paths >= 0).sum(1) - 1
            levels = [torch.nonzero(depth == d).flatten() for d in range(self.depth)]
            pos = torch.empty(self.n, dtype=torch.long)
            for nodes in levels:
                pos[nodes] = torch.arange(len(nodes))
            out = [(nodes.to(device), pos[self.parent[nodes].clamp_min(0)].to(device)) for nodes in levels]
            cache[key] = (out, torch.argsort(torch.cat(levels)).to(device))
        return cache[key]

    def _per_group(self, x: torch.Tensor, fn: Callable[..., torch.Tensor]) -> torch.Tensor:
        """``fn(values, dim)`` (softmax or log-softmax) over each sibling group: (..., n) -> (..., n).

        All groups of one size are one (k, s, M) tensor: one call per distinct group size (41 in 9k.tree), no
        segment reductions (their CPU kernels made this the cost of a YOLO9000 decode). A flat tree (one group)
        is one call on the last axis."""
        if self.num_groups == 1:
            return fn(x, -1)
        xt, lead = self._node_major(x)
        m = xt.shape[1]
        buckets, inv = self._buckets(xt.device)
        parts = [fn(xt.index_select(0, nodes).view(k, s, m), 1).view(k * s, m) for s, k, nodes in buckets]
        return self._restore(torch.cat(parts).index_select(0, inv), lead)

    def log_softmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-sibling-group log-softmax: (..., n) logits -> (..., n) log P(node | parent). Differentiable."""
        return self._per_group(logits, torch.log_softmax)

    def softmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-sibling-group softmax (darknet ``softmax_tree``): (..., n) logits -> (..., n) P(node | parent).
        Differentiable; the result may be a non-contiguous view."""
        return self._per_group(logits, torch.softmax)

    def absolute(self, cond: torch.Tensor) -> torch.Tensor:
        """Conditional (..., n) P(node | parent) -> absolute (..., n) P(node) = product along the path to the root
        (darknet ``hierarchy_predictions`` with only_leaves=0: ``p[j] *= p[parent[j]]`` in node order; the same
        products, level by level). Differentiable."""
        ct, lead = self._node_major(cond)
        levels, inv = self._levels(ct.device)
        out = [ct.index_select(0, levels[0][0])]
        for nodes, parent_pos in levels[1:]:
            out.append(ct.index_select(0, nodes) * out[-1].index_select(0, parent_pos))
        return self._restore(torch.cat(out).index_select(0, inv), lead)

    def path_prob(self, cond: torch.Tensor, node: int | torch.Tensor) -> torch.Tensor:
        """P(node) from conditional probabilities (..., n): the product over ``paths[node]`` (darknet's
        ``get_hierarchy_probability``). ``node``: one node for every row, or a tensor of nodes broadcast against
        the rows (...), e.g. each row's label. Returns (...)."""
        if self.num_groups == 1:  # a flat tree: every path is the node alone (the same value, fewer operations)
            idx = torch.as_tensor(node, device=cond.device).expand(cond.shape[:-1])
            return cond.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
        paths = self.paths.to(cond.device, non_blocking=True)[torch.as_tensor(node)]  # (..., D), -1 padded
        paths = paths.expand(*cond.shape[:-1], paths.shape[-1])
        return cond.gather(-1, paths.clamp_min(0)).where(paths >= 0, 1.0).prod(-1)

    def top_down(self, cond: torch.Tensor, thresh: float = 0.5) -> torch.Tensor:
        """darknet ``hierarchy_top_prediction``: from the root group, take the child of highest value (the first
        on ties) while the running product ``p * value`` stays above ``thresh``; a leaf reached is the answer,
        else the node whose group failed (the root group's best node if it was the root group).

        With conditional probabilities this is the paper's descent (``p`` = path probability); darknet calls it
        on absolute probabilities (after ``hierarchy_predictions``), see :mod:`yolo9000.region_decode`.

        Args:
            cond: (N, n) per-node values (conditional or absolute probabilities).
        Returns:
            (N,) predicted node per row.
        """
        n_rows = cond.shape[0]
        dev = cond.device
        offset, size = self.group_offset.to(dev), self.group_size.to(dev)
        child, parent = self.child_group.to(dev), self.parent.to(dev)
        width = int(size.max())
        ar = torch.arange(width, device=dev)
        group = torch.zeros(n_rows, dtype=torch.long, device=dev)
        p = torch.ones(n_rows, dtype=cond.dtype, device=dev)
        result = torch.full((n_rows,), -1, dtype=torch.long, device=dev)
        rows = torch.arange(n_rows, device=dev)
        for _ in range(self.depth + 1):
            active = result < 0
            if not bool(active.any()):
                break
            cols = offset[group].unsqueeze(1) + ar
            valid = ar < size[group].unsqueeze(1)
            vals = torch.where(valid, cond[rows.unsqueeze(1), cols.clamp_max(self.n - 1)], torch.zeros((), device=dev))
            best, arg = vals.max(1)
            best_node = offset[group] + arg
            take = p * best > thresh
            leaf = child[best_node] < 0
            done_leaf = active & take & leaf
            result = torch.where(done_leaf, best_node, result)
            stop_root = active & ~take & (group == 0)
            result = torch.where(stop_root, best_node, result)
            stop_inner = active & ~take & (group != 0)
            result = torch.where(stop_inner, parent[offset[group]], result)
            go = active & take & ~leaf
            p = torch.where(go, p * best, p)
            group = torch.where(go, child[best_node], group)
        return result


def flat_tree(num_classes: int) -> WordTree:
    """A one-level tree (all classes siblings): its hierarchical softmax is the ordinary softmax."""
    return WordTree([-1] * num_classes)


def check_tree_classes(tree: WordTree, class_names: Sequence[str]) -> None:
    """A hierarchical head's class ``i`` is tree node ``i``: the class names must be the tree's node names or WordNet
    ids, in tree order. Raises ValueError naming the first position that differs (labels would otherwise train
    other nodes than they name, silently)."""
    names = list(class_names)
    if len(names) != tree.n:
        raise ValueError(f"{len(names)} class names for a WordTree of {tree.n} nodes")
    bad = [i for i, (a, b, c) in enumerate(zip(names, tree.names, tree.wnids, strict=True)) if a not in (b, c)]
    if not bad:
        return
    i = bad[0]
    raise ValueError(
        f"class {i} is {names[i]!r} but tree node {i} is {tree.names[i]!r} ({tree.wnids[i]}): a hierarchical head's "
        "classes are the tree's nodes in tree order (label the data through the tree: data.class_names: null with "
        "a tree-labelled dataset, yolo9000.data.tree_labels.TreeLabels)"
    )
