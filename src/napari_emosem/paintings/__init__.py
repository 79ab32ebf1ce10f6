"""Four public-domain paintings by Paul Cézanne, shipped with the package (provenance in this
folder's README.md): real brushwork for *File → Open Sample*, ``make demo`` and the tests, so a
fresh installation needs nothing beside it."""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent

#: sample key -> (file name, title as napari shows it)
CEZANNE: dict[str, tuple[str, str]] = {
    "painter_at_work": ("a-painter-at-work-1875.jpg", "A Painter at Work (Cézanne, 1875)"),
    "boy_in_a_red_vest": ("boy-in-a-red-vest-1888.jpg", "Boy in a Red Vest (Cézanne, 1888)"),
    "fortune_marion": ("fortune-mation.jpg", "Fortuné Marion (Cézanne)"),
    "madame_cezanne_in_blue": ("madame-cezanne-in-blue-1890.jpg", "Madame Cézanne in Blue (Cézanne, 1890)"),
}


def painting_paths() -> list[Path]:
    """The four paintings' files, sorted by name."""
    return sorted(FOLDER / file_name for file_name, _ in CEZANNE.values())


def painting_path(key: str) -> Path:
    """The file of one painting by its sample key (see :data:`CEZANNE`)."""
    return FOLDER / CEZANNE[key][0]
