"""WordTree (paper Section 3, "Hierarchical classification"): tree file I/O, sibling groups, the hierarchical
softmax, path probabilities and darknet's top-down decode.

Tree file (darknet ``read_tree``): one node a line, ``<wordnet id> <parent line index>``, -1 for a root. Siblings
are consecutive lines, so a sibling group is a run of lines with the same parent; the softmax is taken per group.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch


class WordTree:
    """A WordTree with its sibling groups.

    Attributes (all LongTensor):
        parent: (n,) parent node, -1 at a root.
        group: (n,) sibling group of each node.
        group_offset, group_size: (G,) first node and size of each group (groups are contiguous runs).
        child_group: (n,) the group holding a node's children, -1 for a leaf.
        paths: (n, D) each node's path to the root (node, parent, ...), padded with -1; D = depth of the tree.
    """

    def __init__(self, parents: Sequence[int], names: Sequence[str] | None = None) -> None:
        n = len(parents)
        parent = torch.tensor(list(parents), dtype=torch.long)
        if n == 0:
            raise ValueError("empty WordTree")
        if bool(((parent < -1) | (parent >= n)).any()):
            raise ValueError("WordTree parent index out of range")
        if bool((parent >= torch.arange(n)).any()):
            raise ValueError("WordTree parents must come before their children (darknet's tree order)")
        starts = torch.ones(n, dtype=torch.bool)
        starts[1:] = parent[1:] != parent[:-1]
        self.n = n
        self.names = list(names) if names is not None else [str(i) for i in range(n)]
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

    @classmethod
    def from_file(cls, path: str | Path, names_file: str | Path | None = None) -> WordTree:
        """Read a darknet tree file (and optionally a names file, one name per line)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"WordTree file not found: {path}")
        ids, parents = [], []
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                ids.append(parts[0])
                parents.append(int(parts[1]) if len(parts) > 1 else -1)
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: expected '<id> <parent index>', got {line!r}") from e
        names = ids
        if names_file is not None:
            names = [s for s in Path(names_file).read_text().splitlines() if s.strip()]
            if len(names) != len(ids):
                raise ValueError(f"{names_file}: {len(names)} names for {len(ids)} tree nodes")
        return cls(parents, names)

    def _expand(self, per_group: torch.Tensor) -> torch.Tensor:
        """(..., G) per-group values -> (..., n) per node."""
        return per_group.index_select(-1, self.group.to(per_group.device))

    def log_softmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-sibling-group log-softmax: (..., n) logits -> (..., n) log P(node | parent)."""
        group = self.group.to(logits.device)
        shape = (*logits.shape[:-1], self.num_groups)
        idx = group.expand_as(logits)
        gmax = logits.new_full(shape, float("-inf")).scatter_reduce(-1, idx, logits, "amax")
        shifted = logits - self._expand(gmax).detach()
        gsum = logits.new_zeros(shape).scatter_add(-1, idx, shifted.exp())
        return shifted - self._expand(gsum).log()

    def softmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-sibling-group softmax: (..., n) -> (..., n) P(node | parent)."""
        return self.log_softmax(logits).exp()

    def absolute(self, cond: torch.Tensor) -> torch.Tensor:
        """Conditional (..., n) P(node | parent) -> absolute (..., n) P(node) = product along the path to the root."""
        parent = self.parent.to(cond.device)
        has_parent = parent >= 0
        out = cond
        for _ in range(self.depth - 1):  # one level per step; parents precede children
            up = torch.where(has_parent, out.index_select(-1, parent.clamp_min(0)), torch.ones_like(out))
            out = cond * up
        return out

    def path_prob(self, cond: torch.Tensor, node: int | torch.Tensor) -> torch.Tensor:
        """P(node) from conditional probabilities (..., n): product over ``paths[node]``. Returns (...)."""
        path = self.paths[node].to(cond.device)
        path = path[path >= 0]
        return cond.index_select(-1, path).prod(-1)

    def top_down(self, cond: torch.Tensor, thresh: float = 0.5) -> torch.Tensor:
        """darknet ``hierarchy_top_prediction``: descend from the root group taking the most likely child while
        the path probability stays above ``thresh``.

        Args:
            cond: (N, n) conditional probabilities.
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
