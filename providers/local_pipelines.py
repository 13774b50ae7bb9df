"""Route options, devices and the pipeline cache of the local provider.

Everything that touches torch or diffusers imports them inside a function, so this module
imports (and ``availability`` answers) without the ``local`` extra. Loading runs in the
device's worker thread; the cache is shared by the workers of every device, so its table is
guarded by a lock. Loads themselves take ``LOAD_LOCK``, one lock for the whole process: a
diffusers load patches torch globally while it builds the model on the meta device, so two
loads at once (two devices, or two provider instances) break each other ("Cannot copy out
of meta tensor"). Generation takes no such lock: devices still run their jobs at once.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import ProviderResourceExhausted, ProviderUnavailable
from gateway.faults import resource_shortage
from providers.base import RouteSpec

__all__ = [
    "EXTRA_MISSING",
    "LOAD_LOCK",
    "LoadKey",
    "LoadedPipeline",
    "LocalOptions",
    "PipelineCache",
    "diffusers_attribute",
    "extra_installed",
    "free_memory",
    "parse_options",
    "resolve_device",
]

log = logging.getLogger("backserv.providers.local")

EXTRA_MISSING = "the local extra is not installed: pip install '.[local]'"
_EXTRA_MODULES = ("torch", "diffusers", "transformers")
#: held by every pipeline load (and diffusers' lazy imports) in this process; see above. A
#: module-level lock on purpose: what it guards is process-wide state of torch and diffusers
LOAD_LOCK = threading.Lock()
DTYPES = ("auto", "float32", "float16", "bfloat16")
#: the pipeline option a job kind needs
PIPELINE_FOR_KIND = {"image": "text2img", "upscale": "upscale", "video": "video"}
VIDEO_FORMATS = ("gif", "mp4")


def extra_installed() -> bool:
    """Whether torch, diffusers and transformers can be imported (without importing them)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in _EXTRA_MODULES)
    except (ImportError, ValueError):  # a broken install counts as none
        return False


def valid_device(value: object) -> bool:
    if not isinstance(value, str):
        return False
    base, _, index = value.partition(":")
    if base in ("auto", "cpu", "mps"):
        return not index
    return base == "cuda" and (not index or (index.isascii() and index.isdigit()))


@dataclass(frozen=True)
class LocalOptions:
    """A route's options, checked: what to load and how to run it."""

    path: Path
    pipeline: str = "text2img"
    device: str = "auto"
    dtype: str = "auto"
    scheduler: str | None = None
    attention_slicing: bool = False
    cpu_offload: bool = False
    video_format: str = "gif"
    max_frames: int = 128


def parse_options(
    route: RouteSpec,
    *,
    models_dir: Path | None,
    device: str,
    dtype: str,
    kind: str | None = None,
) -> LocalOptions:
    """Check a local route's target and options; a problem raises ProviderUnavailable."""
    opts = route.options

    def bad(message: str) -> ProviderUnavailable:
        return ProviderUnavailable(f"Route {route.name}: {message}", code="invalid_route")

    pipeline = opts.get("pipeline", PIPELINE_FOR_KIND.get(kind or "image", "text2img"))
    if pipeline not in PIPELINE_FOR_KIND.values():
        raise bad(f"option 'pipeline' must be one of {', '.join(PIPELINE_FOR_KIND.values())}.")
    if kind is not None and PIPELINE_FOR_KIND.get(kind) != pipeline:
        raise bad(f"a '{pipeline}' pipeline cannot run a job of kind '{kind}'.")
    device = opts.get("device", device)
    if not valid_device(device):
        raise bad("option 'device' must be auto, cpu, cuda, cuda:N or mps.")
    dtype = opts.get("dtype", dtype)
    if dtype not in DTYPES:
        raise bad(f"option 'dtype' must be one of {', '.join(DTYPES)}.")
    scheduler = opts.get("scheduler")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler):
        raise bad("option 'scheduler' must name a diffusers scheduler class.")
    flags = {}
    for name in ("attention_slicing", "cpu_offload"):
        flags[name] = opts.get(name, False)
        if not isinstance(flags[name], bool):
            raise bad(f"option '{name}' must be true or false.")
    video_format = opts.get("video_format", "gif")
    if video_format not in VIDEO_FORMATS:
        raise bad(f"option 'video_format' must be one of {', '.join(VIDEO_FORMATS)}.")
    max_frames = opts.get("max_frames", 128)
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise bad("option 'max_frames' must be a positive integer.")
    path = Path(route.target).expanduser()
    if not path.is_absolute():
        path = (models_dir or Path.cwd()) / path
    return LocalOptions(
        path=path,
        pipeline=pipeline,
        device=device,
        dtype=dtype,
        scheduler=scheduler,
        attention_slicing=flags["attention_slicing"],
        cpu_offload=flags["cpu_offload"],
        video_format=video_format,
        max_frames=max_frames,
    )


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda``, then ``mps``, then ``cpu``; a named device is checked."""
    import torch

    base = device.partition(":")[0]
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if device == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    index = device.partition(":")[2]
    if (
        (base == "cuda" and not cuda)
        or (base == "mps" and not mps)
        or (base == "cuda" and index and int(index) >= torch.cuda.device_count())
    ):
        raise ProviderUnavailable(f"The device '{device}' is not available on this machine.")
    return device


def torch_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":  # half precision where it pays off, full precision on the CPU
        return torch.float32 if device == "cpu" else torch.float16
    return getattr(torch, name)


@dataclass(frozen=True)
class LoadKey:
    """What makes two loaded pipelines different (scheduler and slicing are set per run)."""

    path: str
    device: str
    dtype: str
    cpu_offload: bool = False


@dataclass
class LoadedPipeline:
    key: LoadKey
    pipe: Any
    #: the scheduler the model ships with; a run naming another one derives it from this
    default_scheduler: Any
    attention_slicing: bool = False


class PipelineCache:
    """Loaded pipelines, at most ``max_pipelines``, the least recently used evicted first."""

    def __init__(self, max_pipelines: int = 1) -> None:
        if max_pipelines < 1:
            raise ValueError("max_pipelines must be at least 1")
        self.max_pipelines = max_pipelines
        self._lock = threading.Lock()
        self._entries: OrderedDict[LoadKey, LoadedPipeline] = OrderedDict()

    def loaded(self) -> list[LoadKey]:
        with self._lock:
            return list(self._entries)

    def get(self, key: LoadKey) -> LoadedPipeline:
        """The pipeline for ``key``, loaded (after evicting to make room) if not cached.

        A cached pipeline is answered at once; a load waits for any other load in the
        process to end (``LOAD_LOCK``), then looks again: it may have been that one.
        """
        if (entry := self._cached(key)) is not None:
            return entry
        with LOAD_LOCK:
            if (entry := self._cached(key)) is not None:
                return entry
            with self._lock:
                evicted = []
                while len(self._entries) >= self.max_pipelines:
                    evicted.append(self._entries.popitem(last=False)[1])
            _release(evicted)
            entry = load_pipeline(key)
            with self._lock:
                self._entries[key] = entry
            return entry

    def _cached(self, key: LoadKey) -> LoadedPipeline | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def clear(self) -> None:
        with self._lock:
            evicted = list(self._entries.values())
            self._entries.clear()
        _release(evicted)


def _release(entries: list[LoadedPipeline]) -> None:
    """Drop evicted pipelines and hand their memory back (the allocator caches it)."""
    devices = {e.key.device.partition(":")[0] for e in entries}
    if entries:
        log.info("unloading local models: %s", ", ".join(e.key.path for e in entries))
    entries.clear()  # the caller's list: the last references go here
    if devices:
        free_memory(devices)


def free_memory(devices: set[str]) -> None:
    gc.collect()
    if not devices & {"cuda", "mps"}:
        return
    import torch

    with contextlib.suppress(Exception):  # best effort: never turn cleanup into a failure
        if "cuda" in devices and torch.cuda.is_available():
            torch.cuda.empty_cache()
        if "mps" in devices and torch.backends.mps.is_available():
            torch.mps.empty_cache()


def load_pipeline(key: LoadKey) -> LoadedPipeline:
    """Load a diffusers model directory onto its device; a bad directory is named clearly."""
    import diffusers

    path = Path(key.path)
    if not path.is_dir():
        raise ProviderUnavailable(
            f"The local model directory {path} does not exist.", code="model_not_found"
        )
    index = path / "model_index.json"
    try:
        json.loads(index.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProviderUnavailable(
            f"{path} is not a diffusers model directory: it has no model_index.json.",
            code="model_load_failed",
        ) from None
    except (OSError, ValueError) as exc:
        _raise_if_short(exc, path)
        log.warning("the local model at %s: model_index.json: %s", path, exc)
        raise ProviderUnavailable(
            f"The local model at {path} is corrupt: model_index.json is not valid JSON.",
            code="model_load_failed",
        ) from None
    log.info("loading the local model %s onto %s (%s)", path, key.device, key.dtype)
    try:
        pipe = diffusers.DiffusionPipeline.from_pretrained(
            str(path), dtype=torch_dtype(key.dtype, key.device), local_files_only=True
        )
    except _out_of_memory_error():
        raise
    except Exception as exc:  # its text may name files of the model or the venv: logged only
        _raise_if_short(exc, path)
        log.warning("could not load the local model at %s", path, exc_info=exc)
        raise ProviderUnavailable(
            f"Could not load the local model at {path} ({type(exc).__name__}); the details "
            "are in the server's log.",
            code="model_load_failed",
        ) from None
    pipe.set_progress_bar_config(disable=True)
    if key.cpu_offload and key.device.startswith("cuda"):
        pipe.enable_model_cpu_offload(device=key.device)
    else:
        if key.cpu_offload:
            log.info("cpu_offload only applies to CUDA devices; ignored on %s", key.device)
        pipe.to(key.device)
    return LoadedPipeline(key, pipe, getattr(pipe, "scheduler", None))


def diffusers_attribute(name: str) -> Any:
    """``diffusers.<name>`` (a class), or None. diffusers imports its classes lazily, on
    first access, and that import is not safe beside a load in another thread: the first
    access of a name takes ``LOAD_LOCK``, later ones (the name is then set) do not."""
    import diffusers

    found = vars(diffusers).get(name)
    if found is not None:
        return found
    with LOAD_LOCK:
        return getattr(diffusers, name, None)


def _raise_if_short(exc: BaseException, path: Path) -> None:
    """A load that failed for want of files, memory or disk is retried, not a bad model."""
    if (shortage := resource_shortage(exc)) is not None:
        log.warning("loading the local model at %s: %s: %r", path, shortage, exc)
        raise ProviderResourceExhausted(
            f"The local provider could not load the model: temporary resource exhaustion "
            f"({shortage})."
        ) from None


def _out_of_memory_error() -> type[BaseException]:
    import torch

    error: type[BaseException] = torch.OutOfMemoryError
    return error
