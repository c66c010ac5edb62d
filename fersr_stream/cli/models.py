"""``fersr-models``: list, download, verify, locate and import the pretrained weights fersr uses."""

from __future__ import annotations

import json

import click

from ..errors import WeightsError
from ..weights import registry, store
from . import Group, run_cli

_EPILOG = """\b
Examples:
  fersr-models list                       what is known, its licence, what is cached
  fersr-models list --kind restorer --json
  fersr-models download gfpgan.v1_4 codeformer.v0_1
  fersr-models verify                     rehash every cached file
  fersr-models path gfpgan.v1_4           where the file lives (or will)
  fersr-models import ~/GFPGANv1.4.pth --as gfpgan.v1_4

\b
Files live in $FERSR_HOME, else $XDG_CACHE_HOME/fersr, else ~/.cache/fersr,
as weights/<name>/<filename>. FERSR_OFFLINE=1 forbids downloads;
FERSR_WEIGHTS_MIRROR=URL fetches URL/<filename> instead of the upstream URLs.
"""

_KINDS = sorted({spec.kind for spec in registry.SPECS})


@click.group(name="fersr-models", cls=Group, epilog=_EPILOG)
def cli() -> None:
    """Download, check and locate pretrained weights.

    fersr-stream and fersr-train download what a run needs before it starts (never while building a model);
    this command fetches ahead of time, checks and imports.
    """


@cli.command("list", epilog="Example: fersr-models list --kind restorer --json")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option("--kind", type=click.Choice(_KINDS), help="Only weights of this kind.")
def list_(as_json: bool, kind: str | None) -> None:
    """List known weights.

    Shows each entry's name, kind, size, licence, and whether its file is cached ("bad size": a file of the
    wrong size is there; `fersr-models verify` checks the hashes).
    """
    specs = [spec for spec in registry.REGISTRY.values() if kind is None or spec.kind == kind]
    found = {spec.name: _cached_size(spec.name) for spec in specs}
    rows = [{"name": spec.name, "kind": spec.kind, "size_bytes": spec.size, "size_mb": round(spec.size / 1e6, 1),
             "licence": spec.licence, "cached": found[spec.name] == spec.size, "path": str(store.path(spec.name)),
             "urls": list(spec.urls), "sha256": spec.sha256, "notes": spec.notes} for spec in specs]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = [("NAME", "KIND", "SIZE MB", "LICENCE", "CACHED")]
    table += [(r["name"], r["kind"], f"{r['size_mb']:.1f}", r["licence"],
               "yes" if r["cached"] else "no" if found[r["name"]] is None else "bad size") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(cell.rjust(w) if i == 2 else cell.ljust(w)
                             for i, (cell, w) in enumerate(zip(row, widths))).rstrip())


def _cached_size(name: str) -> int | None:
    """The size of ``name``'s cached file, None when there is none (the hash is left to ``verify``)."""
    try:
        return store.path(name).stat().st_size
    except OSError:
        return None


@cli.command(epilog="Example: fersr-models download gfpgan.v1_4 codeformer.v0_1")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("--force", is_flag=True, help="Download again even if a good copy is cached.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def download(names: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Download weights into the cache.

    Checks size and sha256, resumes an interrupted download, and prints each file's path.
    """
    specs = [registry.get(name) for name in names]  # every name is checked before anything is fetched
    for spec in specs:
        if spec.notes:
            click.echo(f"note: {spec.name}: {spec.notes}", err=True)
        click.echo(store.download(spec.name, force=force, quiet=quiet))


@cli.command(epilog="Example: fersr-models verify gfpgan.v1_4")
@click.argument("names", nargs=-1, metavar="[NAME...]")
def verify(names: tuple[str, ...]) -> None:
    """Rehash cached weights.

    Compares each file with its registry sha256; checks every cached file when no NAME is given.
    """
    for name in names:
        registry.get(name)
    names = names or tuple(store.cached_names())
    if not names:
        click.echo(f"no weights cached in {store.cache_dir()}")
        return
    failed = []
    for name in names:
        try:
            ok = store.verify(name)
        except WeightsError as e:
            click.echo(f"FAIL     {name}: {e}")
            failed.append(name)
            continue
        if ok:
            click.echo(f"ok       {name}  {store.path(name)}")
        else:
            click.echo(f"missing  {name}  {store.path(name)}")
            failed.append(name)
    if failed:
        raise WeightsError(f"{len(failed)} of {len(names)} failed verification: {', '.join(failed)}")


@cli.command("path", epilog="Example: fersr-models path codeformer.v0_1")
@click.argument("name")
def path_(name: str) -> None:
    """Print where weights live in the cache.

    The path is printed whether or not the file is there yet.
    """
    click.echo(store.path(name))


@cli.command("import", epilog="Example: fersr-models import ~/Downloads/GFPGANv1.4.pth --as gfpgan.v1_4")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--as", "name", required=True, metavar="NAME", help="The registry name the file is.")
def import_(file: str, name: str) -> None:
    """Import a file fetched by hand.

    Copies FILE into the cache as NAME if its size and sha256 match the registry; prints its path.
    """
    click.echo(store.import_file(file, name))


def main(argv: list[str] | None = None) -> None:
    """Console entry point of ``fersr-models``."""
    run_cli(cli, "fersr-models", argv)


if __name__ == "__main__":
    main()
