"""SAM weight downloads against a real HTTP server on 127.0.0.1, and the offline message."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import torch

from napari_emosem import paths, weights
from napari_emosem.errors import WeightsError
from napari_emosem.weights import SAM_WEIGHTS, SamWeights, fetch

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path.endswith("/missing.pth"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        if self.path.endswith("/cut.pth"):
            # promise 1 MiB, deliver half, hang up: a connection lost mid-download
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(PAYLOAD)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOSEM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EMOSEM_OFFLINE", raising=False)
    return tmp_path / "cache" / "weights"


def _entry(server, name, sha=None):
    return SamWeights("test", name, f"{server}/{name}", len(PAYLOAD), sha or hashlib.sha256(PAYLOAD).hexdigest())


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_hash_downloads_into_the_cache_once(server, cache):
    path = fetch("test", weights=_entry(server, "good.pth"), progress=False)
    assert path == cache / "good.pth"
    assert path.read_bytes() == PAYLOAD
    mtime = path.stat().st_mtime_ns
    assert fetch("test", weights=_entry(server, "good.pth"), progress=False).stat().st_mtime_ns == mtime


def test_wrong_hash_is_rejected_and_nothing_is_left(server, cache):
    with pytest.raises(WeightsError, match="sha256 does not match"):
        fetch("test", weights=_entry(server, "good.pth", sha="0" * 64), progress=False)
    assert _leftovers(cache) == []


def test_404_names_the_file_and_where_to_put_it(server, cache):
    with pytest.raises(WeightsError) as info:
        fetch("test", weights=_entry(server, "missing.pth"), progress=False)
    message = str(info.value)
    assert "HTTP 404" in message and "missing.pth" in message and str(cache / "missing.pth") in message
    assert _leftovers(cache) == []


def test_connection_cut_half_way_leaves_no_corrupt_file(server, cache):
    with pytest.raises(WeightsError, match="could not be downloaded|does not match"):
        fetch("test", weights=_entry(server, "cut.pth"), progress=False)
    assert _leftovers(cache) == []


def test_mirror_url_replaces_the_official_host(server, cache, monkeypatch):
    monkeypatch.setenv("EMOSEM_WEIGHTS_URL", server + "/mirror")
    entry = SamWeights(
        "test", "good.pth", "https://example.invalid/good.pth", len(PAYLOAD), hashlib.sha256(PAYLOAD).hexdigest()
    )
    assert fetch("test", weights=entry, progress=False).read_bytes() == PAYLOAD


def test_offline_with_nothing_cached_says_which_file_and_where(cache, monkeypatch):
    monkeypatch.setenv("EMOSEM_OFFLINE", "1")
    with pytest.raises(WeightsError) as info:
        fetch("vit_b", progress=False)
    message = str(info.value)
    assert "sam_vit_b_01ec64.pth" in message
    assert SAM_WEIGHTS["vit_b"].url in message
    assert str(paths.weights_dir() / "sam_vit_b_01ec64.pth") in message


def test_unreachable_host_gives_the_same_advice_in_whole_words(cache, monkeypatch):
    # nothing listens on port 9 of 127.0.0.1: the connection is refused at once
    monkeypatch.setenv("EMOSEM_WEIGHTS_URL", "http://127.0.0.1:9")
    with pytest.raises(WeightsError, match="could not be downloaded.*copy it to") as info:
        fetch("vit_b", progress=False)
    message = str(info.value)
    # the reason is the OS's own words, whole, with the address tried (not urllib3's repr cut at 200 characters)
    assert "(Connection refused: http://127.0.0.1:9/sam_vit_b_01ec64.pth)" in message
    assert "emosem weights download vit_b" in message and "--sam-checkpoint PATH" in message
    assert "HTTPConnection" not in message and "\n" not in message


def test_a_long_reason_is_shortened_at_a_word():
    long = RuntimeError("word " * 100)
    text = weights.reason(long, limit=48)
    assert text.endswith(" …") and len(text) <= 50 and text.split()[:-1] == ["word"] * len(text.split()[:-1])
    try:
        try:
            raise FileNotFoundError(2, "No such file or directory")
        except OSError as inner:
            raise RuntimeError("wrapper: " + "x" * 300) from inner
    except RuntimeError as outer:
        assert weights.reason(outer) == "No such file or directory"


@pytest.mark.parametrize("mirror", ["127.0.0.1:8000/sam", "mirror.local/sam/", "/srv/sam", "file:///srv/sam", "http://"])
def test_a_mirror_url_without_scheme_or_host_is_refused_before_downloading(server, cache, monkeypatch, mirror, capsys):
    from napari_emosem.cli import main as emosem

    monkeypatch.setenv("EMOSEM_WEIGHTS_URL", mirror)
    with pytest.raises(WeightsError, match="is not a URL to download from: it needs a scheme and a host"):
        fetch("test", weights=_entry(server, "good.pth"), progress=False)
    assert _leftovers(cache) == []
    assert emosem(["weights", "download", "vit_b"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "EMOSEM_WEIGHTS_URL" in err and "sha256" not in err and "Downloading" not in err


def test_registry_lists_the_official_checkpoints():
    assert set(SAM_WEIGHTS) == {"vit_b", "vit_l", "vit_h"}
    for w in SAM_WEIGHTS.values():
        assert w.url.startswith("https://dl.fbaipublicfiles.com/segment_anything/")
        assert len(w.sha256) == 64 and w.size > 300_000_000


def test_a_local_file_that_is_not_a_sam_checkpoint_is_refused(tmp_path):
    junk = tmp_path / "junk.pth"
    torch.save({"weight": torch.zeros(2)}, junk)
    with pytest.raises(WeightsError, match="not a segment-anything checkpoint"):
        weights.load_sam_state_dict(junk)
    text = tmp_path / "text.pth"
    text.write_text("hello")
    with pytest.raises(WeightsError, match="not a readable SAM checkpoint"):
        weights.load_sam_state_dict(text)


def test_a_gui_can_follow_the_download_with_its_own_progress_object(server, cache):
    class Bar:  # what a widget's progress bar implements (pooch's protocol)
        def __init__(self):
            self.total, self.n, self.closed = None, 0, False

        def update(self, n):
            self.n += n

        def reset(self):
            self.n = 0

        def close(self):
            self.closed = True

    bar = Bar()
    fetch("test", weights=_entry(server, "good.pth"), progress=bar)
    assert bar.total == len(PAYLOAD) and bar.n == len(PAYLOAD) and bar.closed
