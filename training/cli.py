"""``fersr-train``: the KDEF study from the command line.

Commands: ``run`` (the whole study), ``data`` (what a dataset folder holds), ``synth`` (write the synthetic
KDEF-shaped set), ``restore`` (fill the restoration cache, shardable across machines), ``report`` (rebuild
tables and figures), ``plan`` (the grid's size and an estimate of its hours), ``init`` (write the installed
configs out for editing). A user mistake is one line on stderr and exit code 2 (fersr_stream's CLI policy).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import sys
import tempfile
from pathlib import Path

import click

from fersr_stream.archive.connect import Stopped
from fersr_stream.cli import Group
from fersr_stream.errors import FersrError
from fersr_stream.words import counted

from . import config as tconfig
from . import layouts


def _load(config_path: str | None, data: str | None, overrides: tuple[str, ...], **flags) -> tconfig.StudyConfig:
    """Config file, then the convenience flags, then ``--set`` (the most specific wins)."""
    sets = []
    if data is not None:
        sets.append(f"data.root={data}")
    names = {"out": "out", "name": "name", "device": "device"}
    for flag, key in names.items():
        if flags.get(flag) is not None:
            sets.append(f"{key}={flags[flag]}")
    if flags.get("no_pretrained"):
        sets.append("train.pretrained=false")
    if flags.get("no_detect"):
        sets.append("faces.crop=box")
    return tconfig.load(config_path, sets + list(overrides))


@contextlib.contextmanager
def _stoppable(kept, say: bool):
    """Ctrl-C, or the SIGTERM a batch scheduler sends at its time limit, ends a long command with one line saying
    what is kept (``kept()``; every finished piece was written whole) and the exit code a shell gives that signal
    (130, 143)."""
    stopped_by = [signal.SIGINT]

    def terminated(signum, _frame):
        stopped_by[0] = signum
        raise KeyboardInterrupt

    saved = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
        return
    except KeyboardInterrupt:
        signum = stopped_by[0]
    except Stopped as stop:  # the Ray executor's driver takes the signals itself while it waits on Ray
        signum = stop.signum
    finally:
        signal.signal(signal.SIGTERM, saved)
    if say:
        click.echo(f"\nfersr-train: stopped; {kept()}, and the same command goes on from them", err=True)
    sys.exit(128 + signum)


def _finished(folder: Path) -> str:
    """What a stopped run keeps: its finished cells, and how many of the grid's evaluations they hold."""
    from .report import done

    progress = done(folder)
    held = "" if progress is None else f" ({progress[0]} of {progress[1]} evaluations)"
    return f"the finished cells in {folder}{held} are kept"


def _common(f):
    options = [
        click.option("--config", "config_path", help="study YAML: a file, or an installed config's name (smoke, "
                                                     "kdef_three_phase; fersr-train init writes them out)"),
        click.option("--data", help="dataset folder (KDEF, or KDEF_and_AKDEF above it; see data.kind for others)"),
        click.option("--out", help="folder holding experiments and the cache"),
        click.option("--name", help="experiment name (its folder under --out)"),
        click.option("--device", help="auto, cpu, cuda, cuda:N"),
        click.option("--no-pretrained", is_flag=True, help="random initialisation instead of ImageNet weights"),
        click.option("--no-detect", is_flag=True, help="KDEF's fixed face box, no detector (faces.crop=box)"),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="override a config key, e.g. train.epochs=10 or 'phases.widths=[8,16]'"),
        click.option("--quiet", is_flag=True, help="no progress bars"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


_EXAMPLES = """\b
Examples:
  fersr-train data --data /data/KDEF_and_AKDEF            what the loader sees, and every file it fixes or drops
  fersr-train data --data /data/fer2013 --kind fer2013    another layout (fer2013 rafdb ckplus jaffe affectnet folders)
  fersr-train run --config smoke       a first try, on a drawn (synthetic) set
  fersr-train run --config kdef_three_phase --data /data/KDEF_and_AKDEF
  fersr-train run --config kdef_three_phase --data /data/KDEF_and_AKDEF \\
      --set 'train.models=[resnet18]' --set 'protocol.only_folds=[0]'     one model, one fold first
  fersr-train restore --config kdef_three_phase --data ... --shard 0/4
  fersr-train report runs/kdef_three_phase                 rebuild tables, figures and REPORT.md
"""


@click.group(name="fersr-train", cls=Group, epilog=_EXAMPLES)
def cli() -> None:
    """The KDEF study: does face restoration recover emotion recognition lost to low resolution?

    Without --config a run takes the built-in defaults: the full study (every model, ImageNet-pretrained).
    """


@cli.command(epilog="Example: fersr-train run --config smoke")
@_common
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: fill the restoration cache and run the cells as Ray tasks (pip install -e '.[ray]')")
@click.option("--ray-address", metavar="HOST:PORT", help="the Ray cluster to join  [default: a local Ray]")
@click.option("--workers", type=click.IntRange(min=1), metavar="N",
              help="cells at once on Ray  [default: one per GPU, else one per 4 CPUs]")
def run(config_path, data, overrides, quiet, executor, ray_address, workers, **flags) -> None:
    """Run the study (skipping finished cells) and write its report."""
    from fersr_stream.archive import checks

    from . import phases

    checks.flags(executor, {"ray_address": ray_address, "workers": workers})
    runner = None
    if executor == "ray":
        from .cluster import RayExecutor

        runner = RayExecutor(ray_address, workers, progress=not quiet)
    config = _load(config_path, data, overrides, **flags)
    study = phases.Study(config, progress=not quiet)
    study.prepare()
    with _stoppable(lambda: _finished(study.folder), say=study.dist.main):
        folder = study.run(runner)
    if study.dist.main:  # under torchrun every rank gets here; one line is enough
        click.echo(f"report: {folder / 'REPORT.md'}")


@cli.command(epilog="Example: fersr-train restore --config kdef_three_phase --data DIR --shard 1/4")
@_common
@click.option("--shard", default="0/1", show_default=True, help="fill only faces of shard i of n")
def restore(config_path, data, overrides, quiet, shard, **flags) -> None:
    """Fill the restoration cache for the study's grid (run on several machines with --shard i/n)."""
    from . import phases
    from .cache import parse_shard

    part = parse_shard(shard)
    config = _load(config_path, data, overrides, **flags)
    study = phases.Study(config, progress=not quiet)
    study.prepare()
    with _stoppable(lambda: f"the faces restored so far are kept in {config.cache_dir}", say=True):
        counts = study.restore_all(part)
    for tag, c in counts.items():
        click.echo(f"{tag}: restored {c['restored']}, cached {c['cached']}, other shards {c['other_shards']}")
    click.echo(f"restorer calls: {study.cache.calls}")


@cli.command(epilog="Example: fersr-train data --data /data/fer2013/fer2013.csv --set data.kind=fer2013")
@click.option("--data", required=True, help="dataset folder (or FER2013's CSV)")
@click.option("--config", "config_path", help="study YAML (file or installed name) whose data section to use")
@click.option("--kind", type=click.Choice(layouts.KINDS), help="the layout (data.kind; default kdef)")
@click.option("--angles", help=f"KDEF views to count, e.g. S,HL (default {','.join(tconfig.ANGLES)})")
@click.option("--sessions", help=f"KDEF sessions to count (default {','.join(tconfig.SESSIONS)})")
@click.option("--person-regex", help="folders: regex whose first group is the person id")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="any data.* key, e.g. data.kind=jaffe")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--faces", "with_faces", is_flag=True,
              help="also cut the faces as a run would (faces.*; cached under cache.dir) and count per KDEF view the "
                   "images, faces detected, aligned by landmarks, cut around the detector's box, or given the "
                   "fallback box")
def data(data, config_path, kind, angles, sessions, person_regex, overrides, as_json, with_faces) -> None:
    """Count a dataset's images per emotion, split part, angle, session and person; list every file set aside."""
    from .dataset import FRAMINGS
    from .faces import crop_mode

    flags = {"kind": kind, "angles": angles, "sessions": sessions, "person_regex": person_regex}
    sets = [f"data.root={data}"] + [f"data.{key}={value}" for key, value in flags.items() if value is not None]
    config = tconfig.load(config_path, sets + list(overrides))
    chosen = config.data
    if chosen.kind == "synthetic":  # a synthetic set is drawn in KDEF's layout
        chosen = dataclasses.replace(chosen, kind="kdef")
    dataset = layouts.load(chosen)
    summary = dataset.summary()
    if with_faces:
        summary["faces_by_view"] = _faces_by_view(config, dataset)
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    counts = summary["counts"]
    drawn = " (drawn by fersr-train synth: not KDEF photographs; results on it are not KDEF results)"
    click.echo(f"{dataset.kind} dataset at {dataset.root}: {counted(counts['images'], 'usable image')}"
               f"{drawn if dataset.synthetic else ''}")
    for group in ("emotion", "part", "angle", "session", "person"):
        if group in counts:
            click.echo(f"  {group}: " + ", ".join(f"{k} {v}" for k, v in counts[group].items()))
    click.echo(f"faces: {FRAMINGS[dataset.framing]}; faces.crop={config.faces.crop} -> "
               f"{crop_mode(config.faces, dataset)}")
    click.echo(f"protocols (protocol.split): {', '.join(dataset.protocols)}")
    if with_faces:
        click.echo(f"faces per view (detector {config.faces.detector}, faces.align={config.faces.align}):")
        click.echo("  view  images  detected  landmarks  detector_box  fallback_box")
        for r in summary["faces_by_view"]:
            click.echo(f"  {r['view']:<4} {r['images']:>7} {r['detected']:>9} {r['landmarks']:>10} "
                       f"{r['detector_box']:>13} {r['fallback_box']:>13}")
    listed = ":" if dataset.issues else ""
    click.echo(f"{counted(len(dataset.issues), 'file')} renamed, excluded or unusual{listed}")
    for issue in dataset.issues:
        click.echo(f"  {issue.file}: {issue.action}: {issue.reason}")


def _faces_by_view(config: tconfig.StudyConfig, dataset) -> list[dict]:
    """Cut the dataset's faces as a run would (into the run's cache) and count each cut per KDEF view."""
    from fersr_stream import detect
    from fersr_stream import device as fdevice
    from fersr_stream.config import DetectConfig

    from . import faces

    if faces.crop_mode(config.faces, dataset) == "detect":
        detect.fetch(DetectConfig(name=config.faces.detector))
    found = faces.crop_dataset(dataset, config.faces, config.cache_dir, fdevice.resolve(config.device), False)
    return faces.by_view(found, dataset)


@cli.command(epilog="Example: fersr-train synth /tmp/synthetic-kdef --people 6")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--people", default=4, show_default=True, help="identities (half female, half male)")
@click.option("--width", default=140, show_default=True, help="image width in px (KDEF is 562)")
@click.option("--seed", default=0, show_default=True)
def synth(out, people, width, seed) -> None:
    """Write the synthetic KDEF-shaped set to OUT/KDEF (not KDEF results: for tests and smoke runs)."""
    from . import synthetic

    if people < 2 or width < 48:
        raise click.BadParameter("need --people >= 2 and --width >= 48")
    synthetic.claim(out)
    root = synthetic.write(Path(out), people, width, seed)
    click.echo(f"wrote {people * 70} images to {root}")


@cli.command(epilog="Example: fersr-train report runs/kdef_three_phase")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
def report(folder) -> None:
    """Rebuild the tables, figures and REPORT.md of an experiment folder from its cell metrics."""
    from fersr_stream.errors import ConfigError

    from . import report as report_

    if not (Path(folder) / "run.json").is_file():
        inside = sorted(p.parent for p in Path(folder).glob("*/run.json"))
        example = ", ".join(map(str, inside[:3])) if inside else str(Path("runs") / "kdef_three_phase")
        raise ConfigError(f"{folder} is not an experiment folder (it has no run.json); give <out>/<name>: "
                          f"{'here, ' if inside else 'e.g. '}{example}")
    click.echo(f"report: {report_.write(Path(folder))}")
    progress = report_.done(Path(folder))
    if progress is not None and progress[0] < progress[1]:
        click.echo(f"fersr-train: partial: {progress[0]} of {progress[1]} evaluations are finished; `fersr-train "
                   f"run` with the same config goes on from them", err=True)


@cli.command(epilog="Example: fersr-train plan --config kdef_three_phase --data /data/KDEF_and_AKDEF")
@_common
@click.option("--workers", default="1,4,16", show_default=True, help="worker (process or GPU) counts to estimate")
def plan(config_path, data, overrides, quiet, workers, **flags) -> None:
    """Print the grid's size and an estimate of its hours on 1, 4, 16 workers, from costs measured here."""
    from fersr_stream.errors import ConfigError

    from . import phases
    from . import plan as plan_

    try:
        counts = tuple(int(w) for w in workers.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise ConfigError(f"--workers expects counts >= 1 such as 1,4,16, got {workers!r}")
    config = _load(config_path, data, overrides, **flags)
    with tempfile.TemporaryDirectory(prefix="fersr-plan-") as tmp:
        if config.data.kind == "synthetic" and not (phases.synthetic_root(config) / "KDEF").is_dir():
            # a set that is drawn when the study runs: planning draws it aside, and writes nothing of its own
            config = dataclasses.replace(config, data=dataclasses.replace(config.data, root=tmp))
        grid = plan_.count(config)
        costs, stand_ins = plan_.measure(config, say=(lambda what: None) if quiet else
                                         (lambda what: click.echo(f"plan: {what}", err=True)))
    for line in plan_.describe(grid, costs, counts, tuple(stand_ins)):
        click.echo(line)


@cli.command(epilog="Example: fersr-train init configs/train")
@click.argument("folder", default="configs/train", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="overwrite configs that were edited")
def init(folder, force) -> None:
    """Write the installed study configs (smoke, kdef_three_phase, ...) into FOLDER for editing.

    A config already there and edited is kept unless --force; then run with --config FOLDER/NAME.yaml.
    """
    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for source in tconfig.installed().values():
            target = out / source.name
            text = source.read_text()
            if target.is_file() and target.read_text() == text:
                click.echo(f"{target}: up to date")
            elif target.is_file() and not force:
                click.echo(f"{target}: kept (edited; --force overwrites it)")
            else:
                state = "overwritten" if target.is_file() else "written"
                target.write_text(text)
                click.echo(f"{target}: {state}")
    except OSError as e:
        raise FersrError(f"cannot write the configs into {out}: {e.strerror or e} ({e.filename})") from None


def main() -> None:
    cli.main(prog_name="fersr-train")


if __name__ == "__main__":
    main()
