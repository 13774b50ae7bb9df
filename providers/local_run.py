"""One generation on a loaded pipeline, in its device's worker thread.

The call's keyword arguments come from the kind's canonical input, filtered by what the
pipeline's ``__call__`` accepts (so one mapping serves text-to-image, upscale and the
text/image-to-video pipelines); the step callback reports progress and stops a cancelled
job (it raises ``Cancelled``, so the job ends within one step); the outputs are encoded as
PNG, or GIF / MP4 for video. Errors leave here as ``ProviderError`` subclasses, made outside
the ``except`` block so no traceback keeps the failed run's tensors alive.
"""

from __future__ import annotations

import importlib.util
import inspect
import io
import logging
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from gateway.errors import ProviderError, ProviderInputError, ProviderUnavailable
from gateway.faults import resource_shortage, unexpected_error
from providers.base import Output, RouteSpec
from providers.local_pipelines import (
    LoadedPipeline,
    LoadKey,
    LocalOptions,
    PipelineCache,
    diffusers_attribute,
    free_memory,
)
from providers.sandbox_media import MAX_INPUT_PIXELS, MAX_OUTPUT_PIXELS

__all__ = ["Cancelled", "Work", "mp4_supported", "run"]

log = logging.getLogger("backserv.providers.local")

#: canonical field -> pipeline argument (a route's ``input_map`` overrides; "" drops it)
DEFAULT_MAP = {
    "steps": "num_inference_steps",
    "cfg_scale": "guidance_scale",
    "num_images": "num_images_per_prompt",
    # handled below, not passed as they are
    "seed": "",
    "sampler": "",
    "image_url": "",
    "duration": "",
    "fps": "",
    "scale_factor": "",
}
#: other names pipelines use for the same argument
ALTERNATIVES = {
    "num_images_per_prompt": ("num_videos_per_prompt",),
    "guidance_scale": ("max_guidance_scale",),
    "fps": ("frame_rate", "target_fps"),
}
#: short sampler names a job may send, and the diffusers scheduler each one means
SAMPLERS = {
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "pndm": "PNDMScheduler",
    "lms": "LMSDiscreteScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
}


class Cancelled(Exception):
    """The job was cancelled; raised from the step callback to stop the pipeline."""


@dataclass
class Work:
    options: LocalOptions
    route: RouteSpec
    job_input: dict[str, Any]
    #: the fetched input image (upscale, image-to-video), if any
    image: bytes | None
    cancel: threading.Event
    #: called after every denoising step with (steps done, steps in all)
    on_step: Callable[[int, int], None]
    #: the gateway's job, named in the server's log when the run fails unexpectedly
    job_id: str | None = None


def mp4_supported() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("imageio", "imageio_ffmpeg"))


def run(cache: PipelineCache, key: LoadKey, work: Work) -> tuple[tuple[Output, ...], int | None]:
    """Load (or reuse) the pipeline and run one job; raises Cancelled or a ProviderError."""
    import torch

    if work.cancel.is_set():
        raise Cancelled
    failure: ProviderError | None = None
    try:
        entry = cache.get(key)
        if work.cancel.is_set():
            raise Cancelled
        return _generate(entry, work)
    except (Cancelled, ProviderError):
        raise
    except torch.OutOfMemoryError as exc:
        log.warning("local model %s ran out of memory on %s: %s", key.path, key.device, exc)
        failure = ProviderUnavailable(
            f"The local model ran out of memory on {key.device}. Try a smaller size or fewer "
            "images, dtype float16, attention_slicing or cpu_offload.",
            code="out_of_memory",
        )
    except Exception as exc:  # a shortage (EMFILE, MemoryError) is retried; never its text
        failure = unexpected_error(exc, who="the local pipeline", job_id=work.job_id, log=log)
    # out of the except block: the exception and its frames (and tensors) are gone now
    free_memory({key.device.partition(":")[0]})
    raise failure


def _generate(entry: LoadedPipeline, work: Work) -> tuple[tuple[Output, ...], int | None]:
    pipe = entry.pipe
    _use_scheduler(entry, work)
    if entry.attention_slicing != work.options.attention_slicing:
        if work.options.attention_slicing:
            pipe.enable_attention_slicing()
        else:
            pipe.disable_attention_slicing()
        entry.attention_slicing = work.options.attention_slicing
    kwargs, seed = _arguments(pipe, work)
    result = pipe(**kwargs)
    if work.options.pipeline == "video":
        return (_video(result, work),), seed
    images = [_pil(image) for image in result.images]
    if work.options.pipeline == "upscale" and work.image is not None:
        images = [_to_scale(image, work) for image in images]
    outputs = tuple(
        Output("image/png", data=_png(image), width=image.width, height=image.height)
        for image in images
    )
    return outputs, seed


def _use_scheduler(entry: LoadedPipeline, work: Work) -> None:
    """The route's scheduler, or the job's sampler, or the one the model ships with."""
    sampler = work.job_input.get("sampler")
    name = sampler if isinstance(sampler, str) and sampler else work.options.scheduler
    if name is None or entry.default_scheduler is None:
        entry.pipe.scheduler = entry.default_scheduler
        return
    class_name = SAMPLERS.get(name.lower(), name)
    cls: Any = diffusers_attribute(class_name)
    if not (class_name.endswith("Scheduler") and hasattr(cls, "from_config")):
        known = ", ".join(sorted(SAMPLERS))
        message = f"unknown sampler '{name}' (known: {known}, or a diffusers scheduler class)"
        if name == sampler:
            raise ProviderInputError(f"Invalid 'sampler': {message}.", param="sampler")
        raise ProviderUnavailable(f"Route {work.route.name}: {message}.", code="invalid_route")
    if type(entry.pipe.scheduler) is not cls:
        entry.pipe.scheduler = cls.from_config(entry.default_scheduler.config)


def _arguments(pipe: Any, work: Work) -> tuple[dict[str, Any], int | None]:
    import torch

    params = inspect.signature(pipe.__call__).parameters
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    named = {n for n, p in params.items() if p.kind not in variadic}
    job, options = work.job_input, work.options
    mapping = {**DEFAULT_MAP, **work.route.input_map}
    kwargs: dict[str, Any] = {}
    for name, value in job.items():
        target = _accepted(mapping.get(name, name), named)
        if value is not None and target:
            kwargs[target] = value
    for side in ("width", "height"):
        if isinstance(kwargs.get(side), int) and kwargs[side] % 8:
            raise ProviderInputError(
                f"'{side}' must be a multiple of 8 for a local model.", param=side
            )
    given = job.get("seed")
    seed = given if isinstance(given, int) and not isinstance(given, bool) else None
    if "generator" in named:  # a CPU generator: the same seed gives the same noise anywhere
        kwargs["generator"] = torch.Generator(device="cpu").manual_seed(seed or 0)
    if options.pipeline == "video":
        duration, fps = int(job.get("duration") or 4), int(job.get("fps") or 8)
        if duration * fps > options.max_frames:
            raise ProviderInputError(
                f"This local model makes at most {options.max_frames} frames "
                f"(duration * fps = {duration * fps}).",
                param="duration",
            )
        if "num_frames" in named:
            kwargs["num_frames"] = duration * fps
        if fps_name := _accepted("fps", named):
            kwargs[fps_name] = fps
    if work.image is not None and "image" in named:
        kwargs["image"] = _open_image(work.image)
        if options.pipeline == "upscale":
            _check_scale(kwargs["image"], work)
    if options.pipeline == "upscale" and "prompt" in named:
        kwargs.setdefault("prompt", "")  # the SD x4 upscaler wants one; an empty one is fine
    if "output_type" in named:
        kwargs["output_type"] = "pil"
    for name, value in work.route.constants.items():
        if name not in named:  # not even into **kwargs: there it would be silently ignored
            raise ProviderUnavailable(
                f"Route {work.route.name}: the {type(pipe).__name__} takes no argument '{name}'.",
                code="invalid_route",
            )
        kwargs[name] = value
    default_steps = params["num_inference_steps"].default if "num_inference_steps" in params else 0
    steps = int(kwargs.get("num_inference_steps") or default_steps or 1)
    _add_callback(pipe, kwargs, named, steps, work)
    return kwargs, seed


def _accepted(name: str, named: set[str]) -> str | None:
    for candidate in (name, *ALTERNATIVES.get(name, ())):
        if candidate and candidate in named:
            return candidate
    return None


def _add_callback(
    pipe: Any, kwargs: dict[str, Any], named: set[str], steps: int, work: Work
) -> None:
    """Report each finished step; stop at the first step end after a cancel."""

    def step_done(index: int) -> None:
        total = getattr(pipe, "num_timesteps", None)
        work.on_step(index + 1, total if isinstance(total, int) and total > 0 else steps)
        if work.cancel.is_set():
            raise Cancelled

    def on_step_end(_pipe: Any, index: int, _timestep: Any, _tensors: Any) -> dict[str, Any]:
        step_done(index)
        return {}

    if "callback_on_step_end" in named:
        kwargs["callback_on_step_end"] = on_step_end
        if "callback_on_step_end_tensor_inputs" in named:
            kwargs["callback_on_step_end_tensor_inputs"] = []
    elif "callback" in named:  # pipelines older than callback_on_step_end
        kwargs["callback"] = lambda index, _timestep, _latents: step_done(index)
        if "callback_steps" in named:
            kwargs["callback_steps"] = 1


def _open_image(data: bytes) -> Image.Image:
    """The input image, refused past ``MAX_INPUT_PIXELS`` before it is decoded."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_INPUT_PIXELS:
                raise ProviderInputError(
                    f"'image_url' is {image.width}x{image.height}; at most {MAX_INPUT_PIXELS} "
                    "pixels are allowed.",
                    param="image_url",
                )
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        if resource_shortage(exc):  # the machine, not the image: the job is retried
            raise
        raise ProviderInputError("'image_url' is not an image.", param="image_url") from None


def _check_scale(image: Image.Image, work: Work) -> None:
    """An upscale whose result would be over ``MAX_OUTPUT_PIXELS`` is refused before it runs."""
    factor = int(work.job_input.get("scale_factor") or 2)
    width, height = image.width * factor, image.height * factor
    if width * height > MAX_OUTPUT_PIXELS:
        raise ProviderInputError(
            f"Invalid 'scale_factor': the {image.width}x{image.height} image upscaled {factor} "
            f"times would be {width}x{height}; at most {MAX_OUTPUT_PIXELS} pixels are allowed. "
            "Use a smaller image or a lower 'scale_factor'.",
            param="scale_factor",
        )


def _to_scale(image: Image.Image, work: Work) -> Image.Image:
    """The upscaler's own factor is fixed (4x for most): resize to the one asked for."""
    source = _open_image(work.image or b"")
    factor = int(work.job_input.get("scale_factor") or 2)
    size = (source.width * factor, source.height * factor)
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


def _pil(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image
    import numpy as np

    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    return Image.fromarray(array)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _video(result: Any, work: Work) -> Output:
    frames = result.frames
    if isinstance(frames, list | tuple) and frames and isinstance(frames[0], list | tuple):
        frames = frames[0]  # the first (only) video of the batch
    elif getattr(frames, "ndim", 0) == 5:
        frames = frames[0]
    images = [_pil(frame) for frame in frames]
    if not images:
        raise ProviderError("The local video pipeline returned no frames.")
    fps = int(work.job_input.get("fps") or 8)
    width, height = images[0].size
    if work.options.video_format == "mp4":
        from diffusers.utils import export_to_video

        with tempfile.TemporaryDirectory() as folder:
            path = export_to_video(images, str(Path(folder) / "video.mp4"), fps=fps)
            data = Path(path).read_bytes()
        return Output("video/mp4", data=data, width=width, height=height)
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(20, round(1000 / fps)),
        loop=0,
    )
    return Output("image/gif", data=buffer.getvalue(), width=width, height=height)
