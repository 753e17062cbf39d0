"""Regenerate the sample face PNGs shipped with the emulator.

Run once by hand with scikit-image installed (it is not a runtime dependency):
``python faceswap_jobs/emulator/samples/generate.py``. The sources are public-domain images
bundled with scikit-image; the variants exist so that demos and tests have sources and targets
that visibly differ, and they stay small (≤ 256 px) so the package stays light.
"""

from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps
from skimage import data

LONGEST_SIDE_PX = 224
"""Longest side of every sample: small enough to keep the package under a few hundred KB."""


def _fit(image: Image.Image, longest_side_px: int = LONGEST_SIDE_PX) -> Image.Image:
    """Shrink so the longest side is ``longest_side_px``, keeping the aspect ratio."""
    scale = longest_side_px / max(image.size)
    size = (round(image.width * scale), round(image.height * scale))
    return image.resize(size, Image.Resampling.LANCZOS)


def _warm(image: Image.Image) -> Image.Image:
    """Tint towards orange so the variant is recognisably not the original."""
    red, green, blue = image.split()
    red = red.point(lambda value: min(255, int(value * 1.15) + 10))
    blue = blue.point(lambda value: int(value * 0.8))
    return ImageEnhance.Contrast(Image.merge("RGB", (red, green, blue))).enhance(1.1)


def build_samples() -> dict[str, Image.Image]:
    """Every sample by file name."""
    astronaut = Image.fromarray(data.astronaut())
    face = astronaut.crop((115, 0, 335, 220))
    chelsea = Image.fromarray(data.chelsea())
    return {
        "astronaut.png": _fit(face),
        "astronaut-mirror.png": _fit(ImageOps.mirror(face)),
        "astronaut-warm.png": _fit(_warm(astronaut.crop((140, 20, 310, 190)))),
        "astronaut-gray.png": _fit(ImageOps.grayscale(astronaut.crop((90, 0, 360, 270)))),
        "astronaut-portrait.png": _fit(astronaut.crop((100, 0, 350, 300))),
        "chelsea.png": _fit(chelsea.crop((60, 0, 360, 300))),
    }


def main() -> None:
    """Write every sample next to this script."""
    folder = Path(__file__).resolve().parent
    for name, image in build_samples().items():
        image.save(folder / name, format="PNG", optimize=True)


if __name__ == "__main__":
    main()
