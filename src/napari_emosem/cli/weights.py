"""``emosem weights``: list SAM's official checkpoints, download and verify them, show the cache."""

from __future__ import annotations

from ..weights import SAM_WEIGHTS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "weights",
        help="list, download and verify SAM checkpoints",
        description=(
            "SAM's official checkpoints are downloaded once into the cache folder (EMOSEM_CACHE_DIR "
            "moves it) and verified by sha256. Offline: copy the file into the folder `emosem weights "
            "list` shows. EMOSEM_WEIGHTS_URL downloads from a mirror instead."
        ),
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    ls = sub.add_parser("list", help="the registry and what is cached")
    ls.set_defaults(func=_list)
    dl = sub.add_parser("download", help="download and verify a checkpoint")
    dl.add_argument("name", choices=tuple(SAM_WEIGHTS), help="which of SAM's checkpoints")
    dl.set_defaults(func=_download)


def _list(args) -> int:
    from .. import paths
    from ..weights import SAM_WEIGHTS, cached_path

    print(f"cache folder: {paths.weights_dir()}")
    for w in SAM_WEIGHTS.values():
        here = cached_path(w.name)
        state = f"cached at {here}" if here else "not downloaded"
        print(f"  {w.name:<6} {w.file_name:<22} {w.size / 1e6:7.0f} MB  sha256 {w.sha256[:12]}…  {state}")
    return 0


def _download(args) -> int:
    from ..weights import fetch

    print(fetch(args.name, progress=True))
    return 0
