"""The sample face PNGs shipped in `samples/`, served at `/samples/{name}`.

They give demos and tests image URLs that need no internet. Origin: see `samples/NOTICE.md`.
"""

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


def sample_names() -> list[str]:
    """File names of every sample, sorted."""
    return sorted(path.name for path in SAMPLES_DIR.glob("*.png"))


def sample_path(name: str) -> Path | None:
    """The file of a listed sample; None for anything else (so no path can escape the folder)."""
    if name not in sample_names():
        return None
    return SAMPLES_DIR / name


def load_sample(name: str) -> bytes:
    """The bytes of a listed sample; KeyError for an unknown name."""
    path = sample_path(name)
    if path is None:
        raise KeyError(name)
    return path.read_bytes()
