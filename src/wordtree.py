"""Build a WordTree from WordNet 3.0 the YOLO9000 paper's way and compare trees (`pip install -e ".[wordnet]"`).

Build a darknet tree file (``<wnid> <parent index>`` a line) from a label list (a wnid a line):

    python src/wordtree.py build --labels my_labels.txt --out my.tree [--names-out my.names] [--labels-out my.wnids] \\
        [--root n00002684] [--no-root-node] [--collapse] [--greedy] [--skip-unreachable]

Compare two trees (nodes matched by wnid; ``--labels-*`` when the tree file's first column is not the wnid):

    python src/wordtree.py compare my.tree data/darknet/wordtree/9k.tree

Rebuild darknet's 9k tree from its label set and compare it with ``9k.tree`` (writes the project's
``outputs/wordtree/9k-<label set>[-<options>].tree``, one file set per choice of options):

    python src/wordtree.py build-9k [--label-set imagenet|leaves|nodes] [--root-node] [--collapse] [--greedy]

The 9k label set (``--label-set``): darknet does not ship the list of labels the tree was built from, only the tree.
The paper built it from "the top 9000 classes from the full ImageNet release" plus COCO and the ImageNet detection
classes; ``imagenet`` (default) takes the nodes of ``9k.tree`` that are ImageNet-22k synsets
(``imagenet.labels.list``: 9149 of 9418; the other 269 are the intermediate synsets WordNet's paths added) plus the
nodes of ``coco9k.map`` and ``inet9k.map``, in ``9k.labels`` order: the closest reconstruction of that label set
(an ImageNet-1k list is not in ``data/darknet``; ``imagenet.labels.list`` is the 21842 ImageNet-22k synsets).
``leaves`` uses only the 7573 leaves (the tree must rediscover every internal node), ``nodes`` every node (only
the parents are left to choose). The root mirrors ``9k.tree``: its roots are thing, matter, object and
atmospheric phenomenon, i.e. the tree under physical_entity (n00001930) without that node; ``--root n00002684
--root-node`` builds the paper's literal physical-object tree instead (labels outside it are skipped and counted).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `python src/wordtree.py` without an installed package

from yolo9000.wordnet_tree import (  # noqa: E402
    PHYSICAL_ENTITY,
    PHYSICAL_OBJECT,
    UnreachableLabelsError,
    build_tree,
    compare_trees,
    load_wordnet,
    read_wnids,
    write_lines,
    write_tree,
)
from yolo9000.wordtree import WordTree, read_map  # noqa: E402

DARKNET = Path(__file__).resolve().parents[1] / "data" / "darknet" / "wordtree"
OUT_DIR = Path(__file__).resolve().parents[1] / "outputs" / "wordtree"  # the project's outputs/, wherever run from


def darknet_9k_labels(label_set: str = "imagenet", data_dir: Path = DARKNET) -> list[str]:
    """The labels to rebuild darknet's 9k tree from (see the module docstring), in ``9k.labels`` order."""
    tree = WordTree.from_file(data_dir / "9k.tree", labels_file=data_dir / "9k.labels")
    if label_set == "nodes":
        return list(tree.wnids)
    if label_set == "leaves":
        return [w for w, c in zip(tree.wnids, tree.child_group.tolist(), strict=True) if c < 0]
    if label_set != "imagenet":
        raise ValueError(f"unknown label set {label_set!r} (imagenet, leaves, nodes)")
    keep = set(read_wnids(data_dir / "imagenet.labels.list"))
    mapped = set(read_map(data_dir / "coco9k.map", tree.n)) | set(read_map(data_dir / "inet9k.map", tree.n))
    return [w for i, w in enumerate(tree.wnids) if w in keep or i in mapped]


def format_report(cmp: dict, name_a: str, name_b: str, show: int = 10) -> str:
    """A short text report of :func:`compare_trees`."""
    lines = [
        f"A = {name_a}: {cmp['n_a']} nodes ({cmp['leaves_a']} leaves)",
        f"B = {name_b}: {cmp['n_b']} nodes ({cmp['leaves_b']} leaves)",
        f"shared nodes: {cmp['shared']} ({cmp['shared_frac_a']:.1%} of A, {cmp['shared_frac_b']:.1%} of B); "
        f"only in A: {cmp['only_a']}, only in B: {cmp['only_b']}; shared leaves: {cmp['shared_leaves']}",
        f"same parent: {cmp['same_parent']} of {cmp['shared']} shared nodes ({cmp['same_parent_frac']:.1%})",
        f"same nearest shared ancestor: {cmp['same_shared_ancestor']} ({cmp['same_shared_ancestor_frac']:.1%})",
    ]
    for key in ("duplicates_a", "duplicates_b"):
        if cmp[key]:
            lines.append(f"{key}: {cmp[key]} wnids on several nodes (first one compared)")
    if show:
        lines.append(f"only in A (first {show}): {' '.join(cmp['only_a_wnids'][:show])}")
        lines.append(f"only in B (first {show}): {' '.join(cmp['only_b_wnids'][:show])}")
    return "\n".join(lines)


def _build_and_write(labels: list[str], args: argparse.Namespace, out: Path) -> tuple[list[int], list[str], float]:
    """Build with the command's options, write the tree (+ names, wnids files); returns parents, wnids, seconds."""
    t0 = time.perf_counter()
    wordnet = load_wordnet(args.cache_dir)
    t_load = time.perf_counter() - t0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        parents, wnids, names = build_tree(
            labels,
            args.root,
            keep_root=args.root_node,
            collapse=args.collapse,
            greedy=args.greedy,
            skip_unreachable=args.skip_unreachable,
            wordnet=wordnet,
        )
    for w in caught:  # the skipped labels, without the warning's source line
        print(f"warning: {w.message} (skipped)")
    dups = sorted(w for w, n in Counter(labels).items() if n > 1)
    if dups:  # the first of each counts (the tree has one node per wnid)
        print(f"warning: {len(dups)} label(s) listed more than once, each kept once: {', '.join(dups[:10])}")
    seconds = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    write_tree(out, parents, wnids)
    names_out, labels_out = _side_files(args, out)
    write_lines(names_out, names)
    write_lines(labels_out, wnids)
    roots = [wnids[i] for i, p in enumerate(parents) if p < 0]
    print(
        f"{len(labels)} labels -> {len(wnids)} nodes, {len(roots)} root{'' if len(roots) == 1 else 's'} "
        f"({'root ' + roots[0] if len(roots) == 1 else 'under ' + args.root}"
        f"{'' if args.root_node or len(roots) == 1 else ' (left out)'}{', chains collapsed' if args.collapse else ''}"
        f"{', greedy' if args.greedy else ''}) in {seconds:.1f} s (WordNet load {t_load:.1f} s)"
    )
    print(f"wrote {out}, {names_out}, {labels_out}")
    return parents, wnids, seconds


def _side_files(args: argparse.Namespace, out: Path) -> tuple[Path, Path]:
    """The names and labels files written beside the tree file ``out`` (``--names-out``, ``--labels-out``)."""
    return args.names_out or out.with_suffix(".names"), args.labels_out or out.with_suffix(".labels")


def _check_outputs(args: argparse.Namespace, out: Path) -> None:
    """The three files written must be three files, none of them the label list read (``--labels my.labels --out
    my.tree`` would write the tree's wnids over ``my.labels``: its default labels file)."""
    written = {"--out": out, **dict(zip(("--names-out", "--labels-out"), _side_files(args, out), strict=True))}
    given = args.labels.resolve()
    for opt, path in written.items():
        if path.resolve() == given:
            raise ValueError(
                f"{opt} {path} is the label list read (--labels {args.labels}): it would be overwritten; give {opt} "
                "another file"
            )
    if len({p.resolve() for p in written.values()}) < len(written):
        raise ValueError(f"the files written must differ: {', '.join(f'{k} {v}' for k, v in written.items())}")


def cmd_build(args: argparse.Namespace) -> int:
    _check_outputs(args, args.out)  # before WordNet loads
    _build_and_write(read_wnids(args.labels), args, args.out)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    a = WordTree.from_file(args.tree_a, labels_file=args.labels_a)
    b = WordTree.from_file(args.tree_b, labels_file=args.labels_b)
    cmp = compare_trees(a, b)
    print(format_report(cmp, str(args.tree_a), str(args.tree_b), args.show))
    if args.json:
        Path(args.json).write_text(json.dumps(cmp, indent=1))
    return 0


def build_9k_name(args: argparse.Namespace) -> str:
    """The tree file of a ``build-9k`` run, named by every choice that changes the tree (runs with other options
    write beside each other instead of over each other): ``9k-<label set>[-root-<wnid>][-root-node][-collapse]
    [-greedy].tree``."""
    parts = [f"9k-{args.label_set}"]
    if args.root != PHYSICAL_ENTITY:
        parts.append(f"root-{args.root}")
    parts += [
        flag for flag, on in (("root-node", args.root_node), ("collapse", args.collapse), ("greedy", args.greedy)) if on
    ]
    return "-".join(parts) + ".tree"


def cmd_build_9k(args: argparse.Namespace) -> int:
    labels = darknet_9k_labels(args.label_set, args.darknet_dir)
    print(f"label set {args.label_set!r}: {len(labels)} labels from {args.darknet_dir}")
    out = args.out_dir / build_9k_name(args)
    parents, wnids, _ = _build_and_write(labels, args, out)
    ref = WordTree.from_file(args.darknet_dir / "9k.tree", labels_file=args.darknet_dir / "9k.labels")
    cmp = compare_trees(WordTree(parents, wnids=wnids), ref)
    print(format_report(cmp, str(out), str(args.darknet_dir / "9k.tree"), args.show))
    (out.with_suffix(".compare.json")).write_text(json.dumps(cmp, indent=1))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def build_options(q: argparse.ArgumentParser, root: str, root_node: bool) -> None:
        q.add_argument("--root", default=root, help=f"wnid every path ends at (default {root})")
        g = q.add_mutually_exclusive_group()
        g.add_argument(
            "--root-node",
            dest="root_node",
            action="store_true",
            default=root_node,
            help="the root is a node (the single root)" + (" (default)" if root_node else ""),
        )
        g.add_argument(
            "--no-root-node",
            dest="root_node",
            action="store_false",
            help="leave the root out: its children are the roots" + ("" if root_node else " (default)"),
        )
        q.add_argument("--collapse", action="store_true", help="remove non-label nodes with one child (darknet's)")
        q.add_argument("--greedy", action="store_true", help="multi-path labels cheapest first, not in list order")
        q.add_argument("--skip-unreachable", action="store_true", help="warn about labels outside the root, not fail")
        q.add_argument("--names-out", type=Path, help="names file (default: the tree file with .names)")
        q.add_argument("--labels-out", type=Path, help="wnid of each node (default: the tree file with .labels)")
        q.add_argument("--cache-dir", type=Path, help="WordNet 3.0 copy (default ~/.cache/yolo9000/wordnet-3.0)")

    b = sub.add_parser("build", help="build a tree from a label list")
    b.add_argument("--labels", type=Path, required=True, help="wnids, one a line (first token; '#' comments)")
    b.add_argument("--out", type=Path, required=True, help="tree file to write")
    build_options(b, PHYSICAL_OBJECT, True)
    b.set_defaults(func=cmd_build)

    c = sub.add_parser("compare", help="compare two darknet tree files")
    c.add_argument("tree_a", type=Path)
    c.add_argument("tree_b", type=Path)
    c.add_argument("--labels-a", type=Path, help="wnid of each node of A (default: the tree's first column)")
    c.add_argument("--labels-b", type=Path, help="wnid of each node of B (default: the tree's first column)")
    c.add_argument("--show", type=int, default=10, help="wnids listed of the nodes in one tree only")
    c.add_argument("--json", type=Path, help="write the full comparison as JSON")
    c.set_defaults(func=cmd_compare)

    k = sub.add_parser("build-9k", help="rebuild darknet's 9k tree and compare it with 9k.tree")
    k.add_argument("--label-set", choices=["imagenet", "leaves", "nodes"], default="imagenet")
    k.add_argument("--darknet-dir", type=Path, default=DARKNET, help="9k.tree, 9k.labels, imagenet.labels.list, maps")
    k.add_argument("--out-dir", type=Path, default=OUT_DIR, help=f"where the tree files go (default {OUT_DIR})")
    k.add_argument("--show", type=int, default=10, help="wnids listed of the nodes in one tree only")
    build_options(k, PHYSICAL_ENTITY, False)
    k.set_defaults(func=cmd_build_9k, skip_unreachable=True)  # 7 of darknet's labels are not physical in WordNet
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return args.func(args)
    except (ImportError, UnreachableLabelsError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
