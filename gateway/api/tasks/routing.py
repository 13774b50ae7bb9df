"""Which catalog model runs a task: its type's kind, and the task's provider choices.

A task type runs a model of its kind (``schemas.TASK_KINDS``): the one ``BACKSERV_TASKS_MODELS``
names for it, else the first of that kind in the catalog. A task may steer this:

- ``provider_type`` / ``fallback_provider_type``: the model whose route chain starts with that
  provider, then that fallback (a chain of exactly those is preferred). The core's runner
  walks the chain: the fallback runs when the primary's retries are spent on a failure that
  is not the input's fault.
- ``provider_config.model``: that catalog model (of the task's kind);
  ``provider_config.target`` / ``fallback_provider_config.target``: the routes' targets.
- ``fal_app_id`` (GENERATION, EDITING, REFINE, EXPERIMENTAL_FAL): a model whose primary
  route is that fal app. EXPERIMENTAL_FAL needs one (it passes its parameters to that app),
  except with ``provider_type`` SANDBOX, which runs the sandbox stand-in. An app no catalog
  route targets runs when ``fal_apps.FalAppPolicy`` allows it: on a route shaped like the
  kind's first fal route in the catalog (its input mapping), else passing the input as it is.
- the token's ``providers`` claim: only chains whose every provider it names; its
  ``fal_apps`` claim: only those fal apps.

A chain the catalog does not have is kept on the job (``meta.routes``), under the kind's
default model (whose id the job shows); the scheduler runs the job's own chain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.api.tasks.errors import invalid
from gateway.api.tasks.fal_apps import FalAppPolicy, check_app_id
from gateway.api.tasks.schemas import TASK_KINDS, TaskType
from gateway.catalog import Catalog, CatalogModel
from gateway.errors import ConfigError, PermissionDenied
from providers.base import RouteSpec

FAL_APP_TASKS = frozenset(
    {TaskType.GENERATION, TaskType.EDITING, TaskType.REFINE, TaskType.EXPERIMENTAL_FAL}
)


@dataclass(frozen=True)
class RouteWish:
    """What a task asks for; None everywhere is "the task type's default model"."""

    provider: str | None = None
    fallback: str | None = None
    target: str | None = None
    fallback_target: str | None = None
    model: str | None = None
    allowed: frozenset[str] | None = None
    #: the fal app the task names (``fal_app_id``), when it runs on fal
    fal_app: str | None = None
    #: the request field the wish came from, for the 422's ``loc``
    loc: tuple[str, ...] = ("body", "task_type")


def _config_str(config: Any, key: str, field: str) -> str | None:
    value = config.get(key) if isinstance(config, dict) else None
    if value is not None and not isinstance(value, str):
        raise invalid(("body", field, key), "Input should be a valid string", "string_type")
    return value


def wish_of(
    task: Any,
    task_type: TaskType,
    allowed: frozenset[str] | None,
    fal_apps: frozenset[str] | None = None,
) -> RouteWish:
    """The route wish of a validated create request (``schemas.CreateTask``); ``allowed`` and
    ``fal_apps`` are the token's claims."""
    provider, fallback = task.provider_type, task.fallback_provider_type
    target = _config_str(task.provider_config, "target", "provider_config")
    fallback_target = _config_str(
        task.fallback_provider_config, "target", "fallback_provider_config"
    )
    model = _config_str(task.provider_config, "model", "provider_config")
    loc: tuple[str, ...] = ("body", "task_type")
    if provider or fallback:
        loc = ("body", "provider_type" if provider else "fallback_provider_type")
    if target or model:
        loc = ("body", "provider_config")
    fal_app = getattr(task, "fal_app_id", None) if task_type in FAL_APP_TASKS else None
    if fal_app is not None and not (
        task_type is TaskType.EXPERIMENTAL_FAL and provider == "sandbox"
    ):
        if provider not in (None, "fal"):
            raise invalid(
                ("body", "provider_type"), f"'fal_app_id' runs on fal, not on {provider.upper()}"
            )
        if target not in (None, fal_app):
            raise invalid(
                ("body", "provider_config", "target"), "differs from 'fal_app_id'; send one"
            )
        check_app_id(fal_app)
        FalAppPolicy.check_claim(fal_app, fal_apps)
        provider, target, loc = "fal", fal_app, ("body", "fal_app_id")
    else:
        fal_app = None
    for name in (provider, fallback):
        if allowed is not None and name is not None and name not in allowed:
            raise PermissionDenied(
                f"This token may not run tasks on {name.upper()} (it allows: "
                f"{', '.join(sorted(p.upper() for p in allowed)) or 'none'})."
            )
    return RouteWish(provider, fallback, target, fallback_target, model, allowed, fal_app, loc)


class ModelChooser:
    def __init__(
        self,
        catalog: Catalog,
        configured: Mapping[str, str],
        fal_apps: FalAppPolicy | None = None,
    ) -> None:
        self.catalog = catalog
        self.fal_apps = fal_apps or FalAppPolicy("")
        self.configured: dict[TaskType, CatalogModel] = {}
        for name, model_id in configured.items():
            try:
                task_type = TaskType(name.upper())
            except ValueError:
                raise ConfigError(
                    f"BACKSERV_TASKS_MODELS: '{name}' is not a task type (they are: "
                    f"{', '.join(TaskType)})."
                ) from None
            self.configured[task_type] = catalog.configured(
                model_id, TASK_KINDS[task_type], "BACKSERV_TASKS_MODELS", f"task type {task_type}"
            )

    def candidates(self, task_type: TaskType) -> list[CatalogModel]:
        kind = TASK_KINDS[task_type]
        models = [m for m in self.catalog if m.kind.name == kind]
        first = self.configured.get(task_type)
        return models if first is None else [first, *(m for m in models if m is not first)]

    def choose(self, task_type: TaskType, wish: RouteWish) -> CatalogModel:
        kind = TASK_KINDS[task_type]
        models = self.candidates(task_type)
        if not models:
            raise invalid(
                ("body", "task_type"),
                f"No catalog model runs {task_type} tasks: the catalog ({self.catalog.source}) "
                f"needs a model of kind '{kind}' (or BACKSERV_TASKS_MODELS must name one).",
            )
        if wish.model is not None:
            models = [m for m in models if m.id == wish.model]
            if not models:
                raise invalid(
                    ("body", "provider_config", "model"),
                    f"'{wish.model}' is not a catalog model of kind '{kind}'",
                )
        if wish.fal_app is not None and not any(
            r.provider == "fal" and r.target == wish.fal_app for m in models for r in m.routes
        ):
            return self._uncatalogued_fal_app(models, wish)
        if wish.allowed is not None:
            allowed = [m for m in models if all(r.provider in wish.allowed for r in m.routes)]
            if not allowed:
                raise PermissionDenied(
                    f"No {task_type} model runs only on the providers this token allows "
                    f"({', '.join(sorted(p.upper() for p in wish.allowed)) or 'none'})."
                )
            models = allowed
        fitting = [m for m in models if self._fits(m, wish)]
        if not fitting:
            composed = self._compose(models, wish)
            if composed is None:
                raise invalid(wish.loc, self._no_fit(task_type, wish))
            return composed
        exact = [m for m in fitting if len(m.routes) == (2 if wish.fallback else 1)]
        return exact[0] if wish.provider and exact else fitting[0]

    @staticmethod
    def _compose(models: list[CatalogModel], wish: RouteWish) -> CatalogModel | None:
        """A chain for this task alone, made of routes the catalog has for models of the
        kind: the asked provider (and target) first, then the asked fallback. Only routes an
        operator configured can run, in whatever order the task asks for."""
        if wish.provider is None:
            return None

        def pick(provider: str, target: str | None) -> RouteSpec | None:
            for m in models:
                for r in m.routes:
                    if r.provider == provider and target in (None, r.target):
                        return r
            return None

        primary = pick(wish.provider, wish.target)
        if primary is None:
            return None
        chain = [primary]
        if wish.fallback is not None:
            fallback = pick(wish.fallback, wish.fallback_target)
            if fallback is None:
                return None
            chain.append(fallback)
        base = next(m for m in models if primary in m.routes)
        return base.with_routes(chain)

    def _uncatalogued_fal_app(self, models: list[CatalogModel], wish: RouteWish) -> CatalogModel:
        """A chain for a fal app the catalog lacks, if the policy allows it: the app first,
        then the asked fallback (a route the catalog has). ``wish_of`` has already checked
        both providers against the token."""
        assert wish.fal_app is not None
        self.fal_apps.check(wish.fal_app)
        template = next(
            (
                r
                for m in self.catalog
                if m.kind is models[0].kind
                for r in m.routes
                if r.provider == "fal"
            ),
            RouteSpec("fal", wish.fal_app),
        )
        chain = [dataclasses.replace(template, target=wish.fal_app)]
        if wish.fallback is not None:
            fallback = next(
                (
                    r
                    for m in models
                    for r in m.routes
                    if r.provider == wish.fallback and wish.fallback_target in (None, r.target)
                ),
                None,
            )
            if fallback is None:
                raise invalid(("body", "fallback_provider_type"), self._no_fit_fallback(wish))
            chain.append(fallback)
        return models[0].with_routes(chain)

    def _no_fit_fallback(self, wish: RouteWish) -> str:
        target = f" with target '{wish.fallback_target}'" if wish.fallback_target else ""
        return (
            f"No catalog route of this task's kind runs on {str(wish.fallback).upper()}{target}: "
            f"add one to the catalog ({self.catalog.source}) to use it as the fallback."
        )

    @staticmethod
    def _fits(model: CatalogModel, wish: RouteWish) -> bool:
        routes = model.routes
        primary, second = routes[0], routes[1] if len(routes) > 1 else None
        if wish.provider is not None and primary.provider != wish.provider:
            return False
        if wish.target is not None and primary.target != wish.target:
            return False
        if wish.fallback is not None and (second is None or second.provider != wish.fallback):
            return False
        return wish.fallback_target is None or (
            second is not None and second.target == wish.fallback_target
        )

    def _no_fit(self, task_type: TaskType, wish: RouteWish) -> str:
        asked = []
        if wish.provider:
            asked.append(f"on {wish.provider.upper()}")
        if wish.target:
            asked.append(f"with target '{wish.target}'")
        if wish.fallback:
            asked.append(f"with fallback {wish.fallback.upper()}")
        if wish.fallback_target:
            asked.append(f"with fallback target '{wish.fallback_target}'")
        have = "; ".join(
            f"{m.id} ({', '.join(r.name for r in m.routes)})" for m in self.candidates(task_type)
        )
        return (
            f"No catalog model of kind '{TASK_KINDS[task_type]}' runs {task_type} tasks "
            f"{' '.join(asked) or 'as asked'}: add one to the catalog ({self.catalog.source}). "
            f"Its {TASK_KINDS[task_type]} models: {have or 'none'}."
        )
