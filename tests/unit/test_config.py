from pathlib import Path

import pytest
import yaml

from fersr_stream import config as cfg
from fersr_stream.errors import ConfigError, SinkError


def test_defaults_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("track:\n  smooth: 0.8\ndegrade:\n  width: 16\n")
    c = cfg.load(path, ["track.iou=0.5", "degrade.width=none", "enhance.name=gfpgan"])
    assert c.track.smooth == 0.8 and c.track.iou == 0.5
    assert c.degrade.width is None and c.enhance.name == "gfpgan"


def test_unknown_key_suggests_nearest():
    with pytest.raises(ConfigError, match=r"unknown config key 'track.smoth'; did you mean 'track.smooth'"):
        cfg.load(None, ["track.smoth=1"])
    with pytest.raises(ConfigError, match="did you mean 'detect'"):
        cfg.load(None, ["detekt.name=haar"])


def test_bad_types_and_shapes(tmp_path):
    with pytest.raises(ConfigError, match="expected int"):
        cfg.load(None, ["degrade.width=abc"])
    with pytest.raises(ConfigError, match="expected bool"):
        cfg.load(None, ["overlay.inset=maybe"])
    with pytest.raises(ConfigError, match="expected int, got True"):  # not taken as 1
        cfg.load(None, ["detect.full_every=true"])
    with pytest.raises(ConfigError, match="key=value"):
        cfg.load(None, ["track.smooth"])
    with pytest.raises(ConfigError, match=r"'track' is a section; give its keys, e.g. track.iou=\.\.\.$"):
        cfg.load(None, ["track=1"])
    with pytest.raises(ConfigError, match="not found"):
        cfg.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        cfg.load(bad)


def test_a_config_file_that_is_no_yaml_mapping_is_one_line_saying_where(tmp_path, monkeypatch):
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("# café\ndetect:\n  full_every: 2\n".encode("latin-1"))
    utf16 = tmp_path / "notepad.yaml"
    utf16.write_text("detect:\n  full_every: 2\n", encoding="utf-16")  # Windows Notepad's "Unicode"
    for path in (latin1, utf16):
        with pytest.raises(ConfigError, match=f"^config file {path} is not UTF-8 text; save it as UTF-8$"):
            cfg.load(path)
    broken = tmp_path / "broken.yaml"
    broken.write_text("detect:\n  full_every: 2\n track:\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML: expected <block end>, but found .* \(line 3, "
                                          r"column 2\)$"):
        cfg.load(broken)
    with pytest.raises(ConfigError, match=f"^config file {tmp_path} is a folder; give a YAML file or an installed "
                                          f"config's name: default, restore_lowres$"):
        cfg.load(tmp_path)
    twice = tmp_path / "twice.yaml"
    twice.write_text("detect:\n  full_every: 2\ntrack:\n  iou: 0.3\ndetect:\n  name: haar\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML: key 'detect' is given twice \(line 5, column 1\)$"):
        cfg.load(twice)
    locked = tmp_path / "locked.yaml"
    locked.write_text("detect:\n  full_every: 2\n")
    def refused(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patch:  # a file the user may not read (chmod is no proof for root)
        patch.setattr(Path, "read_text", refused)
        with pytest.raises(ConfigError, match=f"^cannot read config file {locked}: Permission denied$"):
            cfg.load(locked)
    bom = tmp_path / "bom.yaml"
    bom.write_text("\ufeffdetect:\n  full_every: 3\n", encoding="utf-8")
    assert cfg.load(bom).detect.full_every == 3


@pytest.mark.parametrize("setting, message", [
    ("track.smooth=1.5", r"track.smooth must be in \[0, 1\)"),
    ("track.smooth=nan", r"track.smooth must be in \[0, 1\)"),
    ("track.max_age=-1", "track.max_age must be >= 0"),
    ("detect.scale_factor=1.0", "detect.scale_factor must be > 1"),
    ("detect.full_every=0", "detect.full_every must be at least 1"),
    ("align.size=0", "align.size must be at least 16"),
    ("align.margin=-1", "align.margin must be >= 0"),
    ("degrade.jpeg=0", "degrade.jpeg must be a quality in 1..100"),
    ("degrade.width=1", "degrade.width must be at least 2 pixels"),
    ("degrade.width=513", r"degrade.width must be at most the crop's side, align.size = 512"),  # not 84 GB
    ("enhance.reuse_iou=2", r"enhance.reuse_iou must be in \[0, 1\]"),
    ("classify.batch=0", "classify.batch must be at least 1"),
    ("source.queue_size=0", "source.queue_size must be at least 1"),
    ("max_frames=0", "max_frames must be at least 1"),
])
def test_values_out_of_range_are_refused_when_the_config_is_made(setting, message):
    with pytest.raises(ConfigError, match=f"^{message}.*, got "):
        cfg.load(None, [setting])


def test_save_round_trip(tmp_path):
    c = cfg.load(None, ["enhance.reuse_every=8", "source.uri=cam0"])
    cfg.save(c, tmp_path / "r.yaml")
    assert cfg.load(tmp_path / "r.yaml") == c
    with pytest.raises(SinkError, match="cannot write the resolved config"):
        cfg.save(c, tmp_path / "missing" / "r.yaml")


def test_shipped_configs_load_and_are_package_data():
    import tomllib

    assert set(cfg.installed()) == {"default", "restore_lowres"}
    for path in cfg.installed().values():
        cfg.load(path)
    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["fersr_stream"]
    shipped = {p for pattern in patterns for p in cfg.INSTALLED.parent.glob(pattern)}
    assert set(cfg.installed().values()) <= shipped


def test_a_config_by_name_by_its_clone_path_or_as_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nowhere near a clone
    lowres = cfg.installed()["restore_lowres"]
    for given in ("restore_lowres", "restore_lowres.yaml", "configs/stream/restore_lowres.yaml"):
        assert cfg.find(given) == lowres
    assert cfg.load("restore_lowres").degrade.width == 16
    (tmp_path / "restore_lowres.yaml").write_text("degrade:\n  width: 24\n")  # a file of the user's wins
    assert cfg.load("restore_lowres.yaml").degrade.width == 24 and cfg.load("restore_lowres").degrade.width == 16
    with pytest.raises(ConfigError, match=r"^config file not found: restore_low; installed configs \(--config "
                                          r"NAME\): default, restore_lowres$"):
        cfg.load("restore_low")


def test_the_default_config_file_spells_out_every_key_at_its_default():
    path = cfg.installed()["default"]
    assert yaml.safe_load(path.read_text()) == yaml.safe_load(yaml.safe_dump(cfg.to_dict(cfg.StreamConfig())))
