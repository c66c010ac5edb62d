"""Study config: YAML + --set through fersr_stream's loader, checked values, splits."""

from __future__ import annotations


import pytest

from fersr_stream.errors import ConfigError
from training import config, kdef, splits, synthetic
from training.dataset import DatasetError

CONFIGS = config.INSTALLED


@pytest.mark.parametrize("name", ["smoke.yaml", "kdef_three_phase.yaml"])
def test_shipped_configs_load(name):
    cfg = config.load(CONFIGS / name)
    assert cfg.train.models and cfg.phases.widths


def test_overrides_and_errors():
    cfg = config.load(None, ["phases.widths=[8, 16]", "train.models=[resnet18, mini_xception]",
                             "phases.restorers=[bicubic, 'codeformer@0.7']", "protocol.only_folds=[0, 2]"])
    assert cfg.phases.widths == (8, 16) and cfg.protocol.only_folds == (0, 2)
    assert config.parse_restorer(cfg.phases.restorers[1]) == config.RestorerSpec("codeformer", 0.7)
    cases = {"train.modls=[x]": "did you mean 'train.models'",
             "train.models=[resnet19]": "unknown value 'resnet19'",
             "phases.restorers=[gfpan]": "unknown restorer 'gfpan'",
             "phases.restorers=['codeformer@2']": "must be in [0, 1]",
             "phases.widths=[8, x]": "expected int, got 'x'",
             "phases.widths=[8, 8]": "names a width twice",
             "phases.arms=[hr, sr]": "unknown value 'sr'",
             "phases.arms=[]": "must name at least one arm",
             "phases.restorers=[gfpgan@0.3]": "only codeformer takes a fidelity",
             "protocol.only_folds=[7]": "outside 0..4",
             "protocol.only_folds=[]": "must name a fold",
             "data.angles=[S, XX]": "unknown value 'XX'",
             "data.sessions=AB": "unknown value 'AB'",  # a scalar is one item, not its letters
             "train.lr=-1": "'train.lr' must be > 0",
             "train.weight_decay=-1": "'train.weight_decay' must be >= 0",
             "train.patience=-2": "'train.patience' must be >= 0",
             "train.input_size=100000": "must be 32 to 1024 px",
             "train.input_size=1": "must be 32 to 1024 px, got 1",
             "cache.batch=-3": "'cache.batch' must be >= 1",
             "faces.detector=haarr": "unknown value 'haarr'",
             "faces.margin=-1": "'faces.margin' must be >= 0",
             "faces.crop=square": "unknown value 'square'; choose from auto, detect, box, none",
             "faces.align=eyes": "'faces.align': unknown value 'eyes'; choose from landmarks, box",
             "ablation.align=[boxes]": "unknown value 'boxes'",
             "ablation.widths=[12]": "'ablation.widths': 12 is not in 'phases.widths'",
             "data.kind=csv": "unknown value 'csv'; choose from kdef, folders, fer2013, rafdb, ckplus, jaffe",
             "data.person_regex=S(\\d+)": "'data.person_regex' applies to data.kind=folders only",
             "protocol.split=random": "choose from subject, image, official",
             "report.example_widths=[0]": "widths must be >= 2 px",
             "report.example_widths=[300]": "300 px is not lower than the face crops",
             "name=": "config key 'name' needs a value",
             "name=../../escape": "'name' names the experiment's folder inside 'out'",  # nothing written outside
             "name=..": "a plain folder name, got '..'",
             "train.seed=1": "config key 'train.seed' moved to protocol.seeds",
             "protocol.seeds=[]": "must list distinct seeds",
             "protocol.seeds=[1, 1]": "must list distinct seeds"}
    for item, message in cases.items():
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            config.load(None, [item])
    with pytest.raises(ConfigError, match="the official split is one fold"):
        config.load(None, ["protocol.split=official", "protocol.only_folds=[1]"])
    assert config.load(None, ["protocol.split=official", "protocol.only_folds=[0]"]).protocol.only_folds == (0,)
    # a list key also takes one item, or comma-separated items, without brackets
    cfg = config.load(None, ["train.models=resnet18", "phases.widths=8,16", "data.angles=S"])
    assert (cfg.train.models, cfg.phases.widths, cfg.data.angles) == (("resnet18",), (8, 16), ("S",))


def test_fingerprint_ignores_operational_keys():
    a = config.load(None, [])
    assert config.fingerprint(a) == config.fingerprint(config.load(None, ["train.models=[resnet18]",
                                                                          "train.workers=0", "data.root=/x"]))
    assert config.fingerprint(a) != config.fingerprint(config.load(None, ["train.lr=0.1"]))
    # cells are named by width and restorer only, so another degradation recipe must not reuse the folder
    assert config.fingerprint(a) != config.fingerprint(config.load(None, ["phases.degrade.blur=1.0"]))
    assert config.fingerprint(a) == config.fingerprint(config.load(None, ["phases.widths=[8]",
                                                                          "phases.restorers=[bicubic]"]))
    # which folds run is not what a fold is: a pilot fold can grow into the full study
    assert config.fingerprint(a) == config.fingerprint(config.load(None, ["protocol.only_folds=[0]"]))
    # more training seeds add cells; the number of processes changes what a cell's model is
    assert config.fingerprint(a) == config.fingerprint(config.load(None, ["protocol.seeds=[0, 1, 2]"]))
    assert config.fingerprint(a, 1) != config.fingerprint(a, 2)
    assert config.differences(config.fingerprinted(a, 1), config.fingerprinted(a, 4)) == ["world_size"]
    other = config.load(None, ["train.lr=0.1", "phases.degrade.blur=1.0"])
    assert config.differences(config.fingerprinted(a), config.fingerprinted(other)) == ["degrade.blur", "train.lr"]


def test_an_old_train_seed_key_in_a_file_says_where_it_moved(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("train:\n  seed: 3\n")
    with pytest.raises(ConfigError) as info:
        config.load(old)
    assert str(info.value).startswith("config key 'train.seed' moved to protocol.seeds") and "\n" not in str(info.value)


def test_a_restorer_file_is_tagged_by_its_content(tmp_path):
    weights = tmp_path / "mine.pth"
    weights.write_bytes(b"one")
    spec = config.parse_restorer(f"gfpgan:{weights}")
    first = spec.tag
    assert first.startswith("gfpgan-") and first == config.parse_restorer(f"gfpgan:{weights}").tag
    weights.write_bytes(b"other")  # replaced in place: new results, not the old file's
    assert config.parse_restorer(f"gfpgan:{weights}").tag != first
    assert config.parse_restorer("gfpgan:gfpgan.v1_3").tag == "gfpgan-c953a8"  # a registry entry: its sha256


def test_one_tag_per_weights_file_and_the_same_weights_twice_is_refused(tmp_path):
    # the default weights named explicitly are the default: one tag, so one set of cells and cached faces
    assert config.parse_restorer("gfpgan:gfpgan.v1_4").tag == config.parse_restorer("gfpgan").tag == "gfpgan"
    for restorers in ("[gfpgan, 'gfpgan:gfpgan.v1_4']", "['codeformer@0.5', 'codeformer@0.5:codeformer.v0_1']"):
        with pytest.raises(ConfigError, match="names the same weights twice") as info:
            config.load(None, [f"phases.restorers={restorers}"])
        assert "\n" not in str(info.value)
    one, copy = tmp_path / "a.pth", tmp_path / "b.pth"
    one.write_bytes(b"same")
    copy.write_bytes(b"same")  # two names, one content
    with pytest.raises(ConfigError, match="names the same weights twice"):
        config.load(None, [f"phases.restorers=['gfpgan:{one}', 'gfpgan:{copy}']"])
    with pytest.raises(ConfigError, match="names one restorer twice"):
        config.load(None, ["phases.restorers=[bicubic, bicubic]"])
    # another fidelity or other weights are other restorers
    config.load(None, ["phases.restorers=['codeformer@0.5', 'codeformer@0.7', gfpgan, 'gfpgan:gfpgan.v1_3']"])


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return kdef.load(synthetic.write(tmp_path_factory.mktemp("s"), 10, width=48))


def test_subject_folds_are_disjoint_by_person_and_cover_everyone(tree):
    protocol = config.ProtocolConfig(folds=5, seed=1)
    folds = splits.make(tree, protocol)
    person = {s.key: s.person for s in tree.samples}
    tested = []
    for f in folds:
        train, val, test = ({person[k] for k in part} for part in (f.train, f.val, f.test))
        assert not (train & test) and not (val & test) and not (train & val)
        assert set(f.test_people) == test and set(f.val_people) == val
        assert {p[0] for p in test} == {"F", "M"}  # dealt by gender
        assert len(f.train) + len(f.val) + len(f.test) == len(tree)
        tested += f.test
    assert sorted(tested) == sorted(s.key for s in tree.samples)
    assert splits.make(tree, protocol) == folds  # fixed seed, same folds
    assert splits.make(tree, config.ProtocolConfig(folds=5, seed=2)) != folds


def test_image_folds_and_json_round_trip(tree, tmp_path):
    protocol = config.ProtocolConfig(split="image", folds=3)
    folds = splits.make(tree, protocol)
    for f in folds:
        assert not set(f.train) & set(f.test) and not set(f.val) & set(f.test)
    splits.save(folds, protocol, tmp_path / "splits.json")
    assert splits.load(tmp_path / "splits.json") == folds


def test_too_few_people_is_a_dataset_error(tree, tmp_path):
    with pytest.raises(DatasetError, match="lower protocol.folds"):
        splits.make(tree, config.ProtocolConfig(folds=10))
    # three people in two folds: the fold testing two would leave nobody to validate on
    three = kdef.load(synthetic.write(tmp_path / "3", 3, width=48), angles=("S",))
    with pytest.raises(DatasetError, match="a training and a validation person"):
        splits.make(three, config.ProtocolConfig(folds=2))
    four = kdef.load(synthetic.write(tmp_path / "4", 4, width=48), angles=("S",))
    for fold in splits.make(four, config.ProtocolConfig(folds=3)):
        assert fold.train and fold.val and fold.test


def test_the_study_aligns_by_mtcnn_landmarks_with_a_box_ablation_by_default():
    cfg = config.load(None, ["train.models=[vgg16, resnet18]", "phases.widths=[8, 16]"])
    assert (cfg.faces.detector, cfg.faces.align, cfg.ablation.align) == ("mtcnn", "landmarks", ("box",))
    assert cfg.ablation_models == ("vgg16",) and cfg.ablation_widths == (8, 16)  # empty: first model, all widths
    with pytest.raises(ConfigError, match="'ablation.models': resnet50 is not in 'train.models'"):
        config.load(None, ["train.models=[resnet18]", "ablation.models=[resnet50]"])
    assert config.load(None, ["train.models=[resnet18]", "ablation.models=[resnet50]", "ablation.align=[]"])
    for path in sorted(CONFIGS.glob("*.yaml")):
        shipped = config.load(path)
        assert (shipped.faces.detector, shipped.faces.align, shipped.ablation.align) == ("mtcnn", "landmarks",
                                                                                         ("box",)), path
