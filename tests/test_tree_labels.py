"""Label sets mapped into a WordTree (yolo9000.data.tree_labels) and a module's evaluated node set (eval_map)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from yolo9000.data.coco import COCOParser
from yolo9000.data.records import DataError, IssueLog
from yolo9000.data.tree_labels import ImageListParser, TreeLabels
from yolo9000.metrics import DetectionEvaluator
from yolo9000.modules.detector import evaluated_names, resolve_map, to_evaluated
from yolo9000.wordtree import WordTree

ROOT = Path(__file__).resolve().parents[1]
SMALL = Path(__file__).parent / "fixtures" / "small.tree"  # animal, vehicle, dog, cat, bird, car, ... (ids = names)
WT = ROOT / "data" / "darknet" / "wordtree"


def _coco(tmp_path: Path, names: list[str]) -> COCOParser:
    """A 2-image COCO JSON: image 0 has one box of each category, image 1 one box of the last category."""
    (tmp_path / "img").mkdir(parents=True)
    for i in range(2):
        (tmp_path / "img" / f"{i}.jpg").write_bytes(b"")
    cats = [{"id": 10 + k, "name": n} for k, n in enumerate(names)]
    anns = [
        {"id": k, "image_id": 0, "category_id": 10 + k, "bbox": [1, 1, 5, 5], "iscrowd": 0} for k in range(len(names))
    ]
    anns.append({"id": 99, "image_id": 1, "category_id": 10 + len(names) - 1, "bbox": [2, 2, 4, 4], "iscrowd": 0})
    data = {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 16, "height": 16} for i in range(2)]}
    data |= {"categories": cats, "annotations": anns}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return COCOParser(ann_file=tmp_path / "ann.json", image_dir=tmp_path / "img")


def test_detection_labels_go_into_the_tree_by_name_and_by_map(tmp_path: Path) -> None:
    tree = WordTree.from_file(SMALL)
    coco = _coco(tmp_path, ["retriever", "car", "dog"])  # a breed, a leaf of another branch, an internal node
    recs = TreeLabels(coco, SMALL).parse(None, IssueLog("error"))
    assert [r.labels.tolist() for r in recs] == [[8, 5, 2], [2]]  # nodes: retriever 8, car 5, dog 2
    assert TreeLabels(coco, SMALL).discover_class_names() == tree.names
    mp = tmp_path / "my.map"
    mp.write_text("7\n6\n0\n")  # terrier, bicycle, animal: the map decides, not the names
    recs = TreeLabels(coco, SMALL, map_file=mp).parse(tree.names, IssueLog("error"))
    assert [r.labels.tolist() for r in recs] == [[7, 6, 0], [0]]
    with pytest.raises(ValueError, match="not found.*'zebra'"):
        TreeLabels(_coco(tmp_path / "z", ["dog", "zebra"]), SMALL).parse(None, IssueLog("error"))


def test_coco_classes_into_the_9k_tree_by_darknets_map(tmp_path: Path) -> None:
    coco_names = (ROOT / "data/darknet/coco.names").read_text().splitlines()
    parser = TreeLabels(
        _coco(tmp_path, coco_names), WT / "9k.tree", WT / "9k.names", WT / "9k.labels", WT / "coco9k.map"
    )
    recs = parser.parse(None, IssueLog("error"))
    nodes = np.array([int(x) for x in (WT / "coco9k.map").read_text().split()])
    assert recs[0].labels.tolist() == nodes.tolist() and recs[1].labels.tolist() == [nodes[-1]]
    names = parser.discover_class_names()
    assert names[int(nodes[0])] == "person" and names[int(nodes[16])] == "dog"  # coco.names: person ... dog (17th)


def test_coco_classes_into_the_9k_tree_by_name(tmp_path: Path) -> None:
    """coco9k.map is written for COCO's 80 in coco.names order; the classes were taken by position, so a COCO
    export of a few categories, or numbered otherwise (alphabetically), trained every box as another class, and a
    JSON without a person box lost 'person' to the Roboflow-placeholder rule and failed ("80 map entries for 79
    labels"). With map_names each class goes to the map by name (COCO's official spellings for darknet's)."""
    coco_names = (ROOT / "data/darknet/coco.names").read_text().splitlines()
    nodes = np.array([int(x) for x in (WT / "coco9k.map").read_text().split()])
    tree = (WT / "9k.tree", WT / "9k.names", WT / "9k.labels")

    def node(name: str) -> int:
        return int(nodes[coco_names.index(name)])

    for k, names in enumerate((["person", "car", "dog"], ["zebra", "airplane", "tv", "potted plant", "couch"])):
        parser = TreeLabels(_coco(tmp_path / str(k), names), *tree, WT / "coco9k.map", ROOT / "data/darknet/coco.names")
        recs = parser.parse(None, IssueLog("error"))
        darknet = {"airplane": "aeroplane", "tv": "tvmonitor", "potted plant": "pottedplant", "couch": "sofa"}
        assert recs[0].labels.tolist() == [node(darknet.get(n, n)) for n in names]
    odd = TreeLabels(
        _coco(tmp_path / "x", ["dog", "unicorn"]), *tree, WT / "coco9k.map", ROOT / "data/darknet/coco.names"
    )
    with pytest.raises(ValueError, match=r"1 classes of the data are not in the map's label set: \['unicorn'\]"):
        odd.parse(None, IssueLog("error"))
    # COCO's own categories (person is its own supercategory) without a person box: person stays a class
    data = json.loads((tmp_path / "0" / "ann.json").read_text())
    data["categories"] = [{"id": 1, "name": "person", "supercategory": "person"}] + [
        {**c, "supercategory": "vehicle" if c["name"] == "car" else "animal"} for c in data["categories"][1:]
    ]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] != 10]
    (tmp_path / "0" / "ann.json").write_text(json.dumps(data))
    assert COCOParser(
        ann_file=tmp_path / "0" / "ann.json", image_dir=tmp_path / "0" / "img"
    ).discover_class_names() == [
        "person",
        "car",
        "dog",
    ]


def test_image_list_labels_by_wnid_in_the_path(tmp_path: Path) -> None:
    (tmp_path / "9.tree").write_text("n00000001 -1\nn00000002 -1\nn00000003 0\nn00000004 0\n")
    lst = tmp_path / "train.list"
    lst.write_text(
        "# ImageNet style\n"
        "n00000003/n00000003_1.JPEG\n"  # folder and file agree
        "/abs/n00000001/n00000004_7.JPEG\n"  # the last wnid of the path wins
        "other/n99999999_1.JPEG\n"  # no node of the tree
        "n00000002_5.jpg\n"
    )
    issues = IssueLog("skip")
    recs = ImageListParser(lst, tmp_path / "9.tree").parse(None, issues)
    assert [r.labels.tolist() for r in recs] == [[2], [3], [1]]
    assert recs[0].image_path == tmp_path / "n00000003/n00000003_1.JPEG" and recs[1].image_path == Path(
        "/abs/n00000001/n00000004_7.JPEG"
    )
    problems = [p for p in issues.report_dict().values() if p["action"] != "notes"]  # the two ids' entry: a note
    (problem,) = problems
    assert problem["count"] == 1 and "n99999999_1.JPEG" in problem["files"][0]
    with pytest.raises(DataError, match="n99999999_1.JPEG"):
        ImageListParser(lst, tmp_path / "9.tree").parse(None, IssueLog("error"))


def test_eval_map_resolution() -> None:
    tree = WordTree.from_file(SMALL)
    assert resolve_map(tree, None) is None and resolve_map(tree, "all") is None
    assert resolve_map(tree, ["cat", "terrier"]).tolist() == [3, 7]
    assert resolve_map(tree, [4, 1]).tolist() == [4, 1]
    assert torch.equal(
        resolve_map(WordTree.from_file(WT / "9k.tree"), str(WT / "coco9k.map")),
        WordTree.from_file(WT / "9k.tree").read_map(WT / "coco9k.map"),
    )
    with pytest.raises(ValueError, match="0..10"):
        resolve_map(tree, [3, 11])
    with pytest.raises(ValueError, match="needs a WordTree"):
        resolve_map(None, ["cat"])
    assert resolve_map(tree, [4, "cat"]).tolist() == [4, 3]  # an integer is an index wherever it stands
    with pytest.raises(ValueError, match=r"eval_map=\[\] reports no class"):
        resolve_map(tree, [])
    # one node twice (by name and by index): refused, naming it (it was taken, a class evaluated twice)
    with pytest.raises(ValueError, match=r"eval_map \['cat', 3\]: node 3 \('cat'\) listed more than once"):
        resolve_map(tree, ["cat", 3])


def test_eval_map_integers_that_are_also_node_names_are_warned(caplog: pytest.LogCaptureFixture) -> None:
    """The digits' tree names its nodes "digit", "even", "odd", "0".."9": eval_map=[5,6] silently took nodes 5 and 6
    (metric_groups' [5,6] means the names); it still does (darknet's map holds indices), with a warning naming the
    nodes each reading gives; names or plain indices warn nothing."""
    tree = WordTree([-1, 0, 0, 1, 1, 2, 2], names=["digit", "even", "odd", "0", "2", "1", "3"])
    with caplog.at_level("WARNING"):
        assert resolve_map(tree, [5, 6]).tolist() == [5, 6]
    assert "'5' is node" not in caplog.text  # no node named "5"
    with caplog.at_level("WARNING"):
        assert resolve_map(tree, [3, 4]).tolist() == [3, 4]
    assert "integers are node indices" in caplog.text and "'3' is node 6, node 3 is '0'" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert resolve_map(tree, ["3", "1"]).tolist() == [6, 5]
        assert resolve_map(tree, [5]).tolist() == [5]  # no node is named "5"
    assert caplog.text == ""


def test_a_map_is_evaluated_as_its_nodes_under_unique_names() -> None:
    """YOLO9000 evaluated through coco9k.map: the per-class results are COCO's 80 nodes, keyed by unique names (they
    were all 9418 nodes keyed by name, and 662 nodes share a name with another: sheep, mouse, apple... were
    overwritten by a later node of that name, their ground truth and AP lost). Truths of nodes the map leaves out
    are not evaluated; predictions and truths are compared by map position."""
    tree = WordTree.from_file(WT / "9k.tree")
    names = (WT / "9k.names").read_text().splitlines()
    nodes = resolve_map(tree, str(WT / "coco9k.map"))
    coco = evaluated_names(names, nodes)
    assert len(coco) == 80 == len(set(coco)) and coco[0] == names[int(nodes[0])]
    sheep = [n for n in coco if n.startswith("sheep")]
    assert len(sheep) == 1 and names.count("sheep") > 1  # unique among the 80, shared in the tree
    every = evaluated_names(names, None)
    assert len(set(every)) == 9418 and f"sheep [{names.index('sheep')}]" in every
    lut = torch.full((len(names),), -1, dtype=torch.long)
    lut[nodes] = torch.arange(80)
    s_node = int(nodes[coco.index(sheep[0])])
    box = torch.tensor([[10.0, 10.0, 50.0, 50.0]])
    preds = [{"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([s_node])}]
    other = next(n for n in range(len(names)) if lut[n] < 0)  # a node outside the map
    targets = [
        {
            "boxes": torch.cat([box, box + 100]),
            "labels": torch.tensor([s_node, other]),
            "difficult": torch.tensor([False, False]),
        }
    ]
    p, t = to_evaluated(preds, targets, lut)
    assert p[0]["labels"].tolist() == t[0]["labels"].tolist() == [coco.index(sheep[0])] and len(t[0]["boxes"]) == 1
    ev = DetectionEvaluator(coco, voc07=True)
    ev.update(p, t)
    out = ev.compute()
    assert out["per_class"][sheep[0]]["num_gt"] == 1 and out["per_class"][sheep[0]]["ap50"] == pytest.approx(1.0)
    assert out["voc07_map_50"] == pytest.approx(1.0) and len(out["per_class"]) == 80


def test_image_list_labels_by_folder_name_for_a_tree_of_ones_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A tree written for one's own classes (cell -> red / white cell -> RBC / WBC) and a list of class-folder paths
    (RBC/x.jpg): every image was skipped ('no WordNet id in the path') and the run stopped with 'no images'. A
    folder named as a node labels it (the one holding it; a wnid in the path still wins); a name two nodes share does
    not, nor an id that is no node. Detection classes going into the tree are logged, by position when a map has no
    map_names."""
    (tmp_path / "cells.tree").write_text("".join(f"n0000000{i} {p}\n" for i, p in enumerate([-1, 0, 0, 1, 2, 2])))
    (tmp_path / "cells.names").write_text("cell\nred cell\nwhite cell\nRBC\nWBC\nWBC\n")  # WBC twice: ambiguous
    lst = tmp_path / "cls.list"
    lst.write_text("crops/RBC/a.jpg\ncrops/white cell/b.jpg\nRBC/n00000004_1.jpg\ncrops/WBC/c.jpg\nRBC/n00000009.jpg\n")
    tree = (tmp_path / "cells.tree", tmp_path / "cells.names")
    issues = IssueLog("skip")
    recs = ImageListParser(lst, *tree).parse(None, issues)
    assert [r.labels.tolist() for r in recs] == [[3], [2], [4]]  # RBC, white cell, the wnid's node over the folder
    # skipped: WBC (two nodes' name) and an id that is no node (not its folder's node: the id says another class)
    assert issues.count("skip_image", "no WordTree node's WordNet id or name in the path") == 1
    # the shared name is said as such, naming the nodes (it was "no node's id or name in the path")
    (shared,) = [i for i in issues.issues if i.reason == "its folder's name is held by several WordTree nodes"]
    assert shared.file.endswith("c.jpg") and "'WBC' is nodes [4, 5]" in shared.detail
    coco = _coco(tmp_path / "c", ["RBC", "white cell"])
    mp = tmp_path / "cells.map"
    mp.write_text("3\n2\n")
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        TreeLabels(coco, *tree, map_file=mp).parse(None, IssueLog("error"))
    assert (
        "classes into the tree by position in the map (map_names: by name): RBC -> RBC, white cell -> white cell"
        in caplog.text
    )


def test_image_list_under_a_dated_folder_is_labelled_by_its_class_folder(tmp_path: Path) -> None:
    """``/data/run20240115/RBC/0.jpg``: "n20240115" inside "run20240115" is no WordNet id (every image of such an
    absolute list, as darknet writes them, was skipped: 'no WordTree node's WordNet id or name in the path'); an id
    that starts a file or folder name still counts (``x_n00000002.jpg`` labels tea)."""
    (tmp_path / "t.tree").write_text("n00000000 -1\nn00000001 0\nn00000002 0\n")
    (tmp_path / "t.names").write_text("cell\nRBC\ntea\n")
    lst = tmp_path / "cls.list"
    dated = tmp_path / "run20240115"
    lst.write_text(f"{dated}/RBC/0.jpg\nscan20231231/RBC/1.jpg\nRBC/x_n00000002.jpg\n")
    recs = ImageListParser(lst, tmp_path / "t.tree", tmp_path / "t.names").parse(None, IssueLog("error"))
    assert [r.labels.tolist() for r in recs] == [[1], [1], [2]]


def test_image_list_written_on_windows_or_macos(tmp_path: Path) -> None:
    """A list with Windows separators (``train\\\\n00000003\\\\a.jpg``: every entry was skipped, the id still found but
    the path wrong) and a class folder named in macOS's decomposed Unicode ('café' as 'cafe' + combining accent,
    which matched no node): labelled, and the path is the file's."""
    import unicodedata

    (tmp_path / "t.tree").write_text("n00000000 -1\nn00000001 0\nn00000002 0\n")
    (tmp_path / "t.names").write_text("drink\ncafé\ntea\n")
    decomposed = unicodedata.normalize("NFD", "café")
    assert decomposed != "café"
    lst = tmp_path / "cls.list"
    lst.write_bytes(f"train\\n00000002\\a.jpg\r\n{decomposed}/b.jpg\n".encode("utf-16"))
    recs = ImageListParser(lst, tmp_path / "t.tree", tmp_path / "t.names").parse(None, IssueLog("error"))
    assert [r.labels.tolist() for r in recs] == [[2], [1]]
    assert recs[0].image_path == tmp_path / "train" / "n00000002" / "a.jpg"


def test_a_path_with_two_nodes_ids_is_noted(tmp_path: Path) -> None:
    """``n00000001/n00000002_x.jpg``: darknet's fill_truth warns "Too many or too few labels"; here the last id
    labels it (the file's own name over its folder's), noted naming both."""
    (tmp_path / "t.tree").write_text("n00000000 -1\nn00000001 0\nn00000002 0\n")
    (tmp_path / "t.names").write_text("drink\ncoffee\ntea\n")
    lst = tmp_path / "cls.list"
    lst.write_text("n00000001/n00000002_x.jpg\nn00000001/y.jpg\n")
    issues = IssueLog("error")
    recs = ImageListParser(lst, tmp_path / "t.tree", tmp_path / "t.names").parse(None, issues)
    assert [r.labels.tolist() for r in recs] == [[2], [1]]
    (note,) = issues.issues
    assert note.action == "note" and note.file.endswith("n00000002_x.jpg") and "n00000001, n00000002" in note.detail
