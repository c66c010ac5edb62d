"""``fersr-stream``: annotate faces and their emotions in a video, camera, stream, image or folder."""

from __future__ import annotations

import logging
import signal

import click

from .. import config as cfg
from ..archive import checks as archive_checks
from ..detect import DETECTORS
from ..enhance import ENHANCERS
from ..errors import ConfigError
from ..pipeline.session import run
from . import Command, run_cli

EXAMPLES = """\b
Examples:
  fersr-stream --source samples/sample.mp4 --output out.mp4 --jsonl out.jsonl
  fersr-stream --source cam0 --show
  fersr-stream --source clip.mp4 --output out.mp4 --simulate-lr 16 --enhancer gfpgan --reuse-every 8
  fersr-stream --source photos/ --output annotated.png --inset
  fersr-stream --source rtsp://camera.local/live --jsonl faces.jsonl --set source.read_timeout=5
  fersr-stream --source cam0 --source rtsp://door/live --source clips/ --jsonl 'out/{name}.jsonl'
  fersr-stream --source archive/ --output 'out/{name}.mp4' --jsonl 'out/{name}.jsonl' --executor ray

Outputs: --output's extension picks a video (.mp4 .mkv .mov .avi .webm) or images (.png .jpg); --jsonl writes one
line per frame; --show opens a window. Give at least one. Several sources (--source repeated, a folder of videos,
a glob, a .txt list) share the networks; each writes its own outputs: put {name} (the source's name) in the paths.
The exit code is 2 when a source failed (the summary says which and why), 130/143 when interrupted.
"""

_DEFAULTS = cfg.StreamConfig()

# CLI flag -> config key; flags left unset keep the value from the defaults / --config file.
_FLAG_KEYS = {
    "source": "source.uri", "output": "output.video", "jsonl": "output.jsonl", "show": "output.show",
    "device": "device", "max_frames": "max_frames", "simulate_lr": "degrade.width",
    "detector": "detect.name", "detector_weights": "detect.weights",
    "enhancer": "enhance.name", "enhancer_weights": "enhance.weights", "fidelity": "enhance.fidelity",
    "enhance_below": "enhance.below", "reuse_every": "enhance.reuse_every",
    "classifier": "classify.weights", "smooth": "track.smooth", "inset": "overlay.inset", "paste": "overlay.paste",
    "metrics_port": "metrics_port",
}


def resolve_config(config_path: str | None, sets: tuple[str, ...], flags: dict) -> cfg.StreamConfig:
    """Defaults < YAML file < explicit flags < ``--set`` overrides."""
    values: dict = {}
    for name, value in flags.items():
        if value is None or value == ():  # not given (a repeatable flag gives an empty tuple)
            continue
        *parents, leaf = _FLAG_KEYS[name].split(".")
        node = values
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return cfg.load(None, sets, base=cfg.merge(cfg.load(config_path), values))


_ENHANCER_FLAGS = ("enhancer_weights", "fidelity", "enhance_below", "reuse_every", "paste")


def warn_unused(config: cfg.StreamConfig, flags: dict) -> None:
    """Warn (on the ``fersr`` logger) of restoration flags given that this run's settings leave without effect."""
    given = [f"--{name.replace('_', '-')}" for name in _ENHANCER_FLAGS if flags.get(name) not in (None, False)]
    if config.enhance.name == "none" and given:
        logging.getLogger("fersr").warning("%s: nothing is restored without --enhancer, so %s nothing",
                                           " ".join(given), "it does" if len(given) == 1 else "they do")
    elif flags.get("fidelity") is not None and config.enhance.name != "codeformer":
        logging.getLogger("fersr").warning("--fidelity: only --enhancer codeformer takes it; %s does not",
                                           config.enhance.name)


@click.command(cls=Command, epilog=EXAMPLES, context_settings={"max_content_width": 110})
@click.option("--source", "-s", multiple=True,
              help="cam0 | camera index | /dev/videoN | video file | rtsp/http URL | image | folder | glob | .txt "
                   "list; repeat it for several sources.")
@click.option("--output", "-o", help="Annotated video (.mp4 .mkv .mov .avi .webm) or image (.png .jpg) to write.")
@click.option("--jsonl", help="Per-frame JSON lines to write (schema in README).")
@click.option("--show", is_flag=True, default=None, help="Show a live window (needs a display; q or Esc stops).")
@click.option("--config", "config_path", metavar="FILE|NAME",
              help=f"YAML config: a file, or an installed config's name ({', '.join(cfg.installed())}).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. track.smooth=0.8.")
@click.option("--device", help="auto | cpu | cuda | cuda:N  [default: auto]")
@click.option("--max-frames", type=click.IntRange(min=1),
              help="Stop each source after this many frames read (a live one's dropped frames count)  [default: all].")
@click.option("--simulate-lr", type=click.IntRange(min=cfg.MIN_FACE_WIDTH), metavar="PX",
              help="Degrade each face as if it were PX pixels wide.")
@click.option("--detector", type=click.Choice(DETECTORS.names()),
              help=f"Face detector  [default: {_DEFAULTS.detect.name}].")
@click.option("--detector-weights", metavar="NAME|PATH",
              help="Registry name or file for yunet/retinaface; a file for mtcnn.")
@click.option("--enhancer", type=click.Choice(ENHANCERS.names()),
              help=f"Face restoration before classification  [default: {_DEFAULTS.enhance.name}]. CodeFormer's "
                   f"weights are non-commercial.")
@click.option("--enhancer-weights", metavar="NAME|PATH", help="Registry name or checkpoint for the enhancer.")
@click.option("--fidelity", type=click.FloatRange(0, 1),
              help=f"CodeFormer fidelity weight w (0 quality .. 1 fidelity)  [default: {_DEFAULTS.enhance.fidelity}].")
@click.option("--enhance-below", type=click.IntRange(min=1), metavar="PX",
              help="Restore only faces narrower than PX source pixels.")
@click.option("--reuse-every", type=click.IntRange(min=0), metavar="K",
              help="A track reuses its last restored face for up to K frames  [default: 0, never].")
@click.option("--classifier", metavar="PATH", help="fersr classifier checkpoint [default: shipped mini-Xception].")
@click.option("--smooth", type=click.FloatRange(0, 1, max_open=True),
              help=f"Per-track EMA weight of the past (0 = off)  [default: {_DEFAULTS.track.smooth}].")
@click.option("--inset", is_flag=True, default=None, help="Draw the processed face beside its box.")
@click.option("--paste", is_flag=True, default=None, help="Paste restored faces back into the frame.")
@click.option("--stats", is_flag=True, help="Print per-stage time and fps, and each source's, at the end.")
@click.option("--metrics-port", type=click.IntRange(1, 65535), metavar="PORT",
              help="Serve Prometheus metrics on http://127.0.0.1:PORT/metrics while the run goes.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: annotate video files on a Ray cluster, one file per worker at a time, resumable "
                   "(pip install -e '.[ray]').")
@click.option("--ray-address", metavar="HOST:PORT",
              help="The Ray cluster to join (`ray start --head` prints it)  [default: a local Ray in this process].")
@click.option("--workers", type=click.IntRange(min=1), metavar="N",
              help="Ray workers, each one pipeline  [default: one per GPU, else one per 4 CPUs].")
@click.option("--retries", type=click.IntRange(min=0), metavar="N",
              help="Tries again a file whose worker died or hit a bug, up to N times  [default: 2].")
def stream(config_path, sets, stats, executor, ray_address, workers, retries, **flags):
    """Detect faces, optionally degrade and restore them, classify 7 emotions, track, and write the result.

    Ctrl-C or SIGTERM stops at once with every output finalized (a second one does not cut that short), and exits
    130 or 143.
    """
    archive_checks.flags(executor, {"ray_address": ray_address, "workers": workers, "retries": retries})
    config = resolve_config(config_path, sets, flags)
    warn_unused(config, flags)
    if executor == "ray":
        return _archive(config, ray_address, workers, 2 if retries is None else retries, stats)
    summary = run(config)
    if summary.interrupted:  # the outputs are final: a late second Ctrl-C must not break into the exit's clean-up
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    click.echo(summary.text(with_stats=stats), err=True)
    # the outputs are whole, but a script must be able to tell an interrupted run, or one where a source failed,
    # from a complete one
    if summary.interrupted:
        return 128 + summary.stopped_by
    return 2 if summary.failed else 0


def _archive(config: cfg.StreamConfig, address: str | None, workers: int | None, retries: int, stats: bool) -> int:
    """``--executor ray``: every file on the Ray cluster; exit code 2 when any failed."""
    from ..archive import driver

    if stats:
        raise ConfigError("--stats cannot be used with --executor ray; the summary gives frames and fps")
    try:
        outcome = driver.run(config, address, workers, retries)
    except driver.Stopped as stop:  # the finished files are whole; those in flight keep their earlier outputs
        click.echo(f"stopped early: {stop.outcome.text()}", err=True)
        return 128 + stop.signum
    click.echo(outcome.text(), err=True)
    return 2 if outcome.failed else 0


def main(argv=None) -> None:
    run_cli(stream, "fersr-stream", argv)


if __name__ == "__main__":
    main()
