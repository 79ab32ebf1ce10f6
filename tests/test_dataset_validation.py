"""Reading validates everything at once and imports nothing half-way."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from napari_emosem.data import StimulusDataset
from napari_emosem.data.rle import RLEError, _runs_to_string, encode_mask, parse_segmentation, string_to_runs
from napari_emosem.data.validate import check_file_name
from napari_emosem.errors import DatasetError

H, W = 30, 40


def rle_json(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode()}


def square(h=H, w=W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[2:8, 3:9] = True
    return m


def make(tmp_path: Path, images, annotations, categories=None, raw: str | None = None) -> Path:
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True, exist_ok=True)
    for name, (h, w) in {"a.png": (H, W), "b.png": (H, W)}.items():
        Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(root / "images" / name)
    if categories is None:
        categories = [{"id": 1, "name": "fear"}, {"id": 2, "name": "awe"}, {"id": 9, "name": "something else"}]
    text = raw if raw is not None else json.dumps(
        {"images": images, "categories": categories, "annotations": annotations}, indent=1
    )
    (root / "annotations.json").write_text(text)
    return root


def good_images():
    return [
        {"id": 1, "file_name": "a.png", "width": W, "height": H},
        {"id": 2, "file_name": "b.png", "width": W, "height": H},
    ]


def ann(id, image_id=1, category_id=1, mask=None, **fields):
    out = {"id": id, "image_id": image_id, "category_id": category_id,
           "segmentation": rle_json(square() if mask is None else mask), "explanation": "x"}  # fmt: skip
    out.update(fields)
    return out


def problems_of(root: Path) -> list[str]:
    with pytest.raises(DatasetError) as info:
        StimulusDataset.open(root)
    return info.value.problems


def test_a_good_file_opens(tmp_path):
    root = make(tmp_path, good_images(), [ann(1), ann(2, 2, 2)])
    assert len(StimulusDataset.open(root).pairs()) == 2


@pytest.mark.parametrize(
    "images, annotations, categories, expected",
    [
        # missing image file
        ([{"id": 1, "file_name": "gone.png", "width": W, "height": H}], [], None, "images/gone.png is missing"),
        # declared size differs from the file's header
        ([{"id": 1, "file_name": "a.png", "width": W + 1, "height": H}], [], None,
         "is 40 × 30 px but the file says 41 × 30"),
        # mask size differs from the image size
        (good_images(), [ann(1, mask=np.zeros((H, W + 2), bool))], None,
         "mask size 42 × 30 differs from the image size 40 × 30"),
        # unknown emotion
        (good_images(), [], [{"id": 1, "name": "joy"}], "unknown emotion 'joy'"),
        # duplicate ids
        (good_images() + [{"id": 1, "file_name": "b.png", "width": W, "height": H}], [], None,
         "image id 1: duplicate image id"),
        (good_images(), [ann(1), ann(1, 2)], None, "annotation id 1: duplicate annotation id"),
        (good_images(), [], [{"id": 1, "name": "fear"}, {"id": 1, "name": "awe"}],
         "category id 1: duplicate category id"),
        # references to missing records
        (good_images(), [ann(1, image_id=99)], None, "image_id 99 is not in 'images'"),
        (good_images(), [ann(1, category_id=77)], None, "category_id 77 is not in 'categories'"),
        # undecodable RLE
        (good_images(), [dict(ann(1), segmentation={"size": [H, W], "counts": "not RLE \x7f"})], None,
         "undecodable segmentation"),
        (good_images(), [dict(ann(1), segmentation={"size": [H, W], "counts": [5, 10]})], None,
         "RLE runs cover 15 pixels"),
        (good_images(), [dict(ann(1), segmentation={"size": [H, W], "counts": "PP"})], None, "truncated"),
        (good_images(), [dict(ann(1), segmentation={"size": [H, W], "counts": [H * W + 5, -5]})], None, "negative run"),
        # file names escaping the folder
        ([{"id": 1, "file_name": "../a.png", "width": W, "height": H}], [], None, "leaves the images/ folder"),
        ([{"id": 1, "file_name": "/etc/a.png", "width": W, "height": H}], [], None, "absolute path"),
        ([{"id": 1, "file_name": "C:/x/a.png", "width": W, "height": H}], [], None, "absolute path"),
        # a mask on "something else"
        (good_images(), [ann(1, category_id=9)], None, "never a mask"),
        # no_stimulus with a mask, two records for one pair
        (good_images(), [ann(1, no_stimulus=True)], None, "no_stimulus is true but the mask is not empty"),
        (good_images(), [ann(1), ann(2)], None, "a second record for this (painting, emotion)"),
        # wrong field types
        (good_images(), [ann(1, explanations="not a list")], None, "'explanations' must be a list of strings"),
        (good_images(), [ann(1, edited="yes")], None, "'edited' must be true or false"),
    ],
)
def test_each_bad_record_is_reported(tmp_path, images, annotations, categories, expected):
    root = make(tmp_path, images, annotations, categories)
    problems = problems_of(root)
    assert any(expected in p for p in problems), problems


def test_every_problem_is_listed_at_once(tmp_path):
    images = good_images() + [
        {"id": 3, "file_name": "missing.png", "width": W, "height": H},
        {"id": 4, "file_name": "../escape.png", "width": W, "height": H},
    ]
    annotations = [
        ann(1),  # fine
        ann(2, 2, category_id=9),  # mask on something else
        ann(3, 1, 2, mask=np.zeros((5, 5), bool)),  # wrong mask size
        ann(3, 2, 2),  # duplicate id
        ann(5, 99),  # missing image
    ]
    categories = [{"id": 1, "name": "fear"}, {"id": 2, "name": "awe"}, {"id": 9, "name": "something else"},
                  {"id": 10, "name": "boredom"}]  # fmt: skip
    root = make(tmp_path, images, annotations, categories)
    with pytest.raises(DatasetError) as info:
        StimulusDataset.open(root)
    problems = info.value.problems
    assert len(problems) == 7, problems
    message = str(info.value)
    assert "7 problems found; nothing was loaded" in message
    for fragment in ("missing.png is missing", "leaves the images/ folder", "never a mask",
                     "mask size 5 × 5", "duplicate annotation id", "image_id 99", "'boredom'"):  # fmt: skip
        assert fragment in message


def test_malformed_json_names_line_and_column(tmp_path):
    root = make(tmp_path, [], [], raw='{\n "images": [\n  {"id": 1,, }\n ]\n}\n')
    with pytest.raises(DatasetError, match=r"line 3, column 12"):
        StimulusDataset.open(root)


def test_a_bad_file_does_not_half_load_into_an_open_dataset(tmp_path):
    root = make(tmp_path, good_images(), [ann(1)])
    ds = StimulusDataset.open(root)
    (root / "annotations.json").write_text(
        json.dumps({"images": good_images(), "categories": [{"id": 1, "name": "fear"}],
                    "annotations": [ann(1), ann(2, 7)]})  # fmt: skip
    )
    with pytest.raises(DatasetError):
        ds.reload()
    with pytest.raises(DatasetError):  # writing re-reads the file and refuses to build on it
        ds.write_painting(np.full((H, W, 3), 128, np.uint8), "a.png", [])


def test_newer_format_version_is_refused(tmp_path):
    root = make(tmp_path, [], [])
    doc = json.loads((root / "annotations.json").read_text())
    doc["info"] = {"format": "napari-emosem stimulus dataset", "format_version": 99}
    (root / "annotations.json").write_text(json.dumps(doc))
    assert any("upgrade napari-emosem" in p for p in problems_of(root))


def test_file_name_rules():
    assert check_file_name("a.jpg") is None
    assert check_file_name("Impressionism/a.jpg") is None
    for bad in ("", "../a.jpg", "x/../../a.jpg", "/a.jpg", "C:\\a.jpg", "D:a.jpg", "x\\a.jpg", 5, "dir/"):
        assert check_file_name(bad), bad


def test_rle_parser_matches_pycocotools():
    rng = np.random.default_rng(3)
    for i in range(200):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        mask = rng.random((h, w)) < rng.random() if i % 2 else np.zeros((h, w), bool)
        if i % 5 == 0:
            mask[:] = True
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        runs = string_to_runs(rle["counts"].decode())
        assert runs.sum() == h * w
        assert runs[1::2].sum() == mask.sum()
        parsed = parse_segmentation({"size": [h, w], "counts": rle["counts"].decode()}, h, w)
        assert parsed.area == int(mask_utils.area(rle))
        assert np.array_equal(mask_utils.decode({"size": [h, w], "counts": parsed.counts.encode()}).astype(bool), mask)
        assert encode_mask(mask).counts == rle["counts"].decode()
    # a huge run (larger than 2**31) is refused by the size check, not decoded out of bounds
    with pytest.raises(RLEError):
        parse_segmentation({"size": [4, 4], "counts": [2**33]}, 4, 4)


def _reference_runs(counts: str) -> list[int]:
    """pycocotools' rleFrString, transcribed line by line into Python (arbitrary-precision ints,
    so nothing here can overflow): the reference the vectorised parser must agree with."""
    runs, p, m = [], 0, 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            if p >= len(counts):
                raise RLEError("truncated")
            c = ord(counts[p]) - 48
            if not 0 <= c <= 63:
                raise RLEError("alphabet")
            x |= (c & 0x1F) << 5 * k
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << 5 * k
        if k > 12:
            raise RLEError("too long")
        if m > 2:
            x += runs[m - 2]
        runs.append(x)
        m += 1
    return runs


def _reference_check(counts: str, h: int, w: int) -> int | None:
    """The foreground area of a valid string, None for one that must be refused."""
    try:
        runs = _reference_runs(counts)
    except RLEError:
        return None
    if not counts or any(r < 0 or r > h * w for r in runs) or sum(runs) != h * w:
        return None
    return sum(runs[1::2])


def test_the_vectorised_rle_check_agrees_with_pycocotools_string_format_on_thousands_of_strings():
    """check_compressed parses every string of a dataset at once; each string must come out as
    the reference parser says: same area, refused exactly when the reference refuses it (torn,
    foreign characters, runs too long, runs that do not cover the mask), in small batches and in
    one large one, and whatever strings sit beside it."""
    from napari_emosem.data import rle as rle_module
    from napari_emosem.data.rle import check_compressed

    rng = np.random.default_rng(7)
    cases = []
    for i in range(2500):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        if i % 50 == 0:
            h, w = 3000, 4000  # long runs: 5 to 7 chunks
        mask = rng.random((h, w)) < rng.random() if i % 7 else np.zeros((h, w), bool)
        if i % 50 == 0:
            mask = np.zeros((h, w), bool)
            mask[int(rng.integers(h)) :, int(rng.integers(w)) :] = True
        counts = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
        damage = int(rng.integers(0, 8))
        if damage == 1:
            counts = counts[:-1] or counts
        elif damage == 2:
            j = int(rng.integers(len(counts)))
            counts = counts[:j] + chr(int(rng.integers(32, 127))) + counts[j + 1 :]
        elif damage == 3:
            counts += counts[: int(rng.integers(1, 4))]
        elif damage == 4:
            h += 1
        elif damage == 5:
            counts = "".join(chr(int(c)) for c in rng.integers(48, 112, int(rng.integers(1, 30))))
        cases.append((counts, h, w))
    cases += [("", 2, 2), ("é0", 2, 2), ("o" * 20 + "0", 2, 2), ("0" * 40, 3, 4)]
    cases.append((_runs_to_string(np.array([2**40, 2**40, -(2**41) + 12])), 3, 4))
    expected = [_reference_check(*case) for case in cases]
    assert 500 < sum(e is not None for e in expected) < len(cases) - 500  # both kinds, plenty
    for chunk in (1 << 22, 64):  # one batch; many small ones
        rle_module_chunk, rle_module._CHUNK_CHARS = rle_module._CHUNK_CHARS, chunk
        try:
            areas, errors = check_compressed(*zip(*cases, strict=True))
        finally:
            rle_module._CHUNK_CHARS = rle_module_chunk
        got = [None if i in errors else int(areas[i]) for i in range(len(cases))]
        assert got == expected
        for i in errors:  # the same reason parse_segmentation gives for the string alone
            counts, h, w = cases[i]
            with pytest.raises(RLEError, match=re.escape(errors[i])):
                parse_segmentation({"size": [h, w], "counts": counts}, h, w)
