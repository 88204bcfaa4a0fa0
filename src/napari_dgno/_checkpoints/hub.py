"""Download the official checkpoints from Hugging Face into its standard cache, and look them up there.

``huggingface_hub`` reads ``HF_HUB_OFFLINE``, ``HF_HUB_CACHE``/``HF_HOME`` and ``HF_ENDPOINT`` once, when it
is imported. napari imports it at start-up, long before a user (or a test) sets those variables, so
every call here reads them *now* and passes them on explicitly (``cache_dir``, ``local_files_only``,
``endpoint``). Nothing is overridden: unset variables fall back to the library's own values.
``local_files_only`` alone is not enough in huggingface_hub 2.x: building the request headers may still
fetch ``/api/agent-harnesses`` unless the import-time ``constants.HF_HUB_OFFLINE`` is true, so while an
offline download call runs that flag is raised too (:func:`_offline_scope`), and put back afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
from huggingface_hub.utils import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import tqdm as hub_tqdm

from ..registry import ModelInfo
from .errors import ChecksumMismatchError, ModelUnavailableError
from .safe_load import sha256_file

#: ``progress(downloaded_bytes, total_bytes_or_None)``; raising from it cancels the download.
ProgressCallback = Callable[[int, "int | None"], None]

_TRUE = {"1", "ON", "YES", "TRUE"}


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache as the environment sets it now: HF_HUB_CACHE, else HF_HOME/hub, else default."""
    env = os.environ
    if env.get("HF_HUB_CACHE"):
        path = env["HF_HUB_CACHE"]
    elif env.get("HUGGINGFACE_HUB_CACHE"):  # legacy name, still honoured by huggingface_hub
        path = env["HUGGINGFACE_HUB_CACHE"]
    elif env.get("HF_HOME"):
        path = os.path.join(env["HF_HOME"], "hub")
    else:
        path = constants.HF_HUB_CACHE
    return Path(os.path.expandvars(os.path.expanduser(path)))


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set to a true value now."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    if value is None:
        return bool(constants.HF_HUB_OFFLINE)
    return value.strip().upper() in _TRUE


@contextmanager
def _offline_scope(offline: bool) -> Iterator[None]:
    """Make huggingface_hub's import-time offline flag agree with HF_HUB_OFFLINE=1 set later."""
    if not offline or constants.HF_HUB_OFFLINE:
        yield
        return
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = False


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def _page(info: ModelInfo) -> str:
    return f"{(_endpoint() or constants.ENDPOINT).rstrip('/')}/{info.repo_id}"


def _alternatives(info: ModelInfo) -> str:
    stem = Path(info.filename or info.name).name
    return (
        f"To use it here: (a) on a machine with internet run `napari-dgno models fetch {info.name}`, then copy "
        f"its Hugging Face cache folder ({hub_cache_dir() / _repo_folder(info)}) into this machine's cache "
        f"({hub_cache_dir()}; set by HF_HUB_CACHE or HF_HOME); or (b) download {info.filename} from "
        f"{_page(info)} and load the file directly: load_model('/path/to/{stem}') "
        f"(CLI: --model /path/to/{stem})."
    )


def _repo_folder(info: ModelInfo) -> str:
    return "models--" + (info.repo_id or "").replace("/", "--")


def cached_path(info: ModelInfo) -> Path | None:
    """The cached file of a registry entry, or None; never touches the network."""
    if info.repo_id is None:
        path = Path(info.local_path) if info.local_path else None
        return path if path is not None and path.is_file() else None
    found = try_to_load_from_cache(
        info.repo_id, info.filename, cache_dir=hub_cache_dir(), revision=info.pinned_revision
    )
    return Path(found) if isinstance(found, str) else None


def progress_tqdm(progress: ProgressCallback) -> type[hub_tqdm]:
    """A huggingface_hub progress-bar class that also reports ``(done, total)`` bytes to ``progress``."""

    class _ReportingTqdm(hub_tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._reported_total = kwargs.get("total")
            self._reported_done = int(kwargs.get("initial") or 0)
            progress(self._reported_done, self._reported_total)

        def update(self, n: float | None = 1):
            self._reported_done += int(n or 0)
            progress(self._reported_done, self._reported_total)
            return super().update(n)

    return _ReportingTqdm


def download(info: ModelInfo, *, force: bool = False, progress: ProgressCallback | None = None) -> Path:
    """``hf_hub_download`` of a registry entry, every failure turned into one actionable message."""
    offline = hub_offline()
    if offline and force:
        raise ModelUnavailableError(
            f"cannot re-download {info.name}: HF_HUB_OFFLINE is set. Unset it on a machine with internet "
            f"and run `napari-dgno models fetch {info.name} --force`."
        )
    # tqdm_class only when needed: older huggingface_hub releases lack the argument.
    extra = {"tqdm_class": progress_tqdm(progress)} if progress is not None else {}
    try:
        with _offline_scope(offline):
            path = hf_hub_download(
                info.repo_id,
                info.filename,
                revision=info.pinned_revision,
                cache_dir=hub_cache_dir(),
                force_download=force,
                local_files_only=offline,
                endpoint=_endpoint(),
                **extra,
            )
    except LocalEntryNotFoundError as err:
        if offline:
            raise ModelUnavailableError(
                f"{info.name} is not in the local Hugging Face cache ({hub_cache_dir()}) and HF_HUB_OFFLINE is "
                f"set, so it cannot be downloaded. {_alternatives(info)}"
            ) from None
        raise ModelUnavailableError(
            f"could not download {info.name} from {_page(info)} (no connection to the Hugging Face Hub: "
            f"{_cause(err)}) and it is not in the local cache ({hub_cache_dir()}). Check the internet "
            f"connection or proxy (HTTPS_PROXY), or use a mirror via HF_ENDPOINT. {_alternatives(info)}"
        ) from err
    except (RepositoryNotFoundError, GatedRepoError) as err:
        raise ModelUnavailableError(
            f"the Hugging Face repository {info.repo_id} of {info.name} is not accessible ({_cause(err)}). "
            f"{_alternatives(info)}"
        ) from err
    except RevisionNotFoundError as err:
        raise ModelUnavailableError(
            f"revision {info.pinned_revision!r} of {info.repo_id} does not exist (check NAPARI_DGNO_HF_REVISION)."
        ) from err
    except EntryNotFoundError as err:
        raise ModelUnavailableError(
            f"{info.filename} is not in {info.repo_id} at revision {info.pinned_revision!r}; "
            "the authors may have moved it. Check the model page and download it by hand: "
            f"{_alternatives(info)}"
        ) from err
    except HfHubHTTPError as err:
        raise ModelUnavailableError(f"downloading {info.name} from {_page(info)} failed: {_cause(err)}") from err
    except (OSError, ValueError) as err:
        raise ModelUnavailableError(
            f"downloading {info.name} into {hub_cache_dir()} failed ({type(err).__name__}: {err}). "
            "Check that the cache folder is writable and has room (~52 MB per model)."
        ) from err
    return Path(path)


def _cause(err: Exception) -> str:
    cause = err.__cause__ or err.__context__
    text = str(cause or err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def verify_sha256(info: ModelInfo, path: Path) -> str:
    """The file's sha256, checked against the registry when the registry knows it."""
    digest = sha256_file(path)
    if info.sha256 and digest != info.sha256.lower():
        raise ChecksumMismatchError(
            f"{path} (weights of {info.name}) has sha256 {digest}, but the published sha256 is "
            f"{info.sha256}: the file is damaged or not the official one. Download it again with "
            f"`napari-dgno models fetch {info.name} --force`."
        )
    return digest


def fetch(info: ModelInfo, *, force: bool = False, progress: ProgressCallback | None = None) -> tuple[Path, str]:
    """The verified local file of a registry entry and its sha256, downloading it when needed."""
    if info.repo_id is None:
        path = Path(info.local_path) if info.local_path else None
        if path is None or not path.is_file():
            raise ModelUnavailableError(
                f"the {info.name} weights are not installed (expected at {path}); reinstall napari-dgno, "
                "or pick an official model (`napari-dgno models list`)"
            )
        return path, verify_sha256(info, path)
    path = download(info, force=force, progress=progress)
    return path, verify_sha256(info, path)
