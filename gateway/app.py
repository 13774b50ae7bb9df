"""The app factory: ``create_app(settings)`` wires store, catalog, providers, scheduler, faces."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from gateway.api.backserv_tasks import BackServTasksAPI
from gateway.api.common import (
    gateway_error_handler,
    http_error_handler,
    unhandled_error_handler,
)
from gateway.api.fair_share import FairShare
from gateway.api.files import FilesAPI
from gateway.api.health import HealthAPI
from gateway.api.images import ImagesAPI
from gateway.api.job_events import JobEventsAPI
from gateway.api.job_views import JobViews
from gateway.api.jobs import SUBMIT_PATH, JobsAPI, render_job
from gateway.api.keys import KeysAPI
from gateway.api.models import ModelsAPI
from gateway.api.openai_edits import EditsAPI
from gateway.api.openai_videos import VideosAPI
from gateway.api.openapi import DocumentOptions, OpenAPIDocument
from gateway.api.poll_shortcut import PollShortcut
from gateway.api.provider_webhooks import ProviderWebhooksAPI
from gateway.api.request_id import RequestIdMiddleware
from gateway.api.submit_shortcut import SubmitShortcut
from gateway.api.tasks import TasksAPI
from gateway.api.tasks.fal_apps import FalAppPolicy
from gateway.api.tasks.jwt import JWTVerifier
from gateway.api.tasks.render import Renderer
from gateway.api.tasks.routing import ModelChooser
from gateway.api.usage import UsageAPI
from gateway.api.webhook_secrets import WebhookSecretsAPI
from gateway.auth import KeyRing
from gateway.catalog import Catalog, load_catalog
from gateway.errors import GatewayError
from gateway.events import JobEvents
from gateway.fetch import GuardedFetcher
from gateway.keys import KeyManager
from gateway.lean_client import tls_context
from gateway.observability.access_log import AccessLogMiddleware
from gateway.observability.http_metrics import HttpLatency
from gateway.observability.joblog import JobLog
from gateway.observability.lag import LagMonitor
from gateway.observability.metrics import Metrics
from gateway.observability.observer import Observers
from gateway.ratelimit import Limits, rate_limiter_for
from gateway.results import OwnFiles, ResultLinks, UrlSigner
from gateway.scheduler.availability import Availability, credential_report
from gateway.scheduler.breaker import BreakerPolicy, Breakers
from gateway.scheduler.janitor import Janitor
from gateway.scheduler.loop import Scheduler
from gateway.scheduler.retry import RetryPolicy
from gateway.scheduler.runner import JobRunner
from gateway.service import JobService
from gateway.settings import Settings
from gateway.storage import OutputSource, ResultStorage, open_storage
from gateway.store import create_store
from gateway.store.base import JobStore
from gateway.uploads import Uploads
from gateway.usage import Usage
from gateway.waiting import Waiting
from gateway.web import WebPages
from gateway.web.latency import Latencies
from gateway.webhooks import WebhookDispatcher
from gateway.webhooks.secrets import WebhookSecrets
from providers.base import Provider, WebhookDelivery
from providers.registry import KNOWN_PROVIDERS, build_providers
from providers.relay import decode_state, encode_state
from providers.sandbox_media import render_image

log = logging.getLogger("backserv")


@dataclass
class Gateway:
    """Everything the app holds, reachable as ``app.state.gateway`` (tests use it)."""

    settings: Settings
    store: JobStore
    catalog: Catalog
    providers: dict[str, Provider]
    storage: ResultStorage
    keyring: KeyRing
    service: JobService
    scheduler: Scheduler
    signer: UrlSigner
    breakers: Breakers
    janitor: Janitor
    events: JobEvents
    waiting: Waiting
    webhooks: WebhookDispatcher
    #: the app's Prometheus metrics (None with BACKSERV_METRICS_ENABLED=false)
    metrics: Metrics | None = None


def create_app(
    settings: Settings | None = None,
    *,
    store: JobStore | None = None,
    providers: dict[str, Provider] | None = None,
    catalog: Catalog | None = None,
    start_scheduler: bool = True,
) -> Starlette:
    settings = settings or Settings()
    catalog = catalog or load_catalog(settings.catalog_path, KNOWN_PROVIDERS)
    store = store or create_store(settings.database_url)
    events = JobEvents()
    store.watch_changes(events.publish)
    fetcher = GuardedFetcher()  # one long-lived client for every output download
    storage = open_storage(
        settings.bucket,
        settings.storage_dir,
        OutputSource(
            max_bytes=settings.max_output_bytes, allow=settings.fetch_allow_list, fetcher=fetcher
        ),
    )
    signer = UrlSigner(b"", settings.base_url)  # keyed at start-up, from the store
    links = ResultLinks(signer, settings.file_ttl_seconds)
    if providers is None:
        providers = build_providers(settings, fetch=OwnFiles(storage, signer))

    def relayed(provider: str, request_id: str, state: str | None) -> None:
        """A delivery for ``request_id`` arrived at another replica: its state, relayed
        (providers/relay.py), or None: read the request now here."""
        if (target := providers.get(provider)) is not None:
            delivery = WebhookDelivery(request_id, decode_state(state), delivery_id="relayed")
            target.deliver(delivery)

    store.watch_deliveries(relayed)

    async def relay(provider: str, delivery: WebhookDelivery) -> None:
        """A delivery verified here, for the replica following its request (perhaps
        another): its state as text when it has one (providers/relay.py)."""
        await store.relay_delivery(provider, delivery.request_id, encode_state(delivery.state))

    breakers = Breakers(
        BreakerPolicy(
            failure_threshold=settings.breaker_failure_threshold,
            failure_ratio=settings.breaker_failure_ratio,
            min_calls=settings.breaker_min_calls,
            window_seconds=settings.breaker_window_seconds,
            cooldown_seconds=settings.breaker_cooldown_seconds,
        )
    )
    metrics = Metrics() if settings.metrics_enabled else None
    lag = None if metrics is None else LagMonitor(metrics.loop_lag)
    observer = Observers(*(o for o in (metrics, JobLog()) if o is not None))
    runner = JobRunner(
        store,
        providers,
        storage,
        RetryPolicy(
            settings.max_route_attempts, settings.retry_base_seconds, settings.retry_max_seconds
        ),
        job_timeout=settings.job_timeout_seconds,
        route_timeout=settings.route_timeout_seconds or None,
        breakers=breakers,
        breaker_wait=settings.breaker_max_wait_seconds,
        lease_margin=settings.lease_seconds * 0.2,
        observer=observer,
        prices=catalog.prices,
    )
    scheduler = Scheduler(
        store,
        catalog,
        runner,
        concurrency=settings.provider_concurrency,
        observer=observer,
        default_concurrency=settings.default_concurrency,
        lease_seconds=settings.lease_seconds,
        heartbeat_seconds=settings.heartbeat_seconds,
        poll_seconds=settings.scheduler_poll_seconds,
    )
    if metrics is not None:
        metrics.watch(store=store, scheduler=scheduler, breakers=breakers, catalog=catalog)
    availability = Availability(providers, breakers)
    service = JobService(
        store,
        catalog,
        scheduler,
        availability,
        rate_limiter_for(store),  # shared by the replicas on PostgreSQL
        observer=observer,
        limits=Limits(
            rate=settings.rate_limit_per_second,
            burst=settings.rate_limit_burst,
            max_active=settings.max_active_jobs_per_key,
        ),
        max_input_bytes=settings.max_input_bytes,
        webhook_allow=settings.webhook_allow_list,
        storage=storage,
    )
    keyring = KeyRing(store, settings.static_api_keys(), cache_seconds=settings.auth_cache_seconds)
    janitor = Janitor(
        store,
        storage,
        file_ttl=settings.file_ttl_seconds,
        record_ttl=settings.record_ttl_seconds,
        interval=settings.purge_interval_seconds,
    )
    webhooks = WebhookDispatcher.from_settings(
        settings, store, lambda job: render_job(job, links), events
    )
    waiting = Waiting(store, events, settings.max_waiters_per_key)
    views = JobViews(settings.job_cache_seconds, settings.job_cache_size)
    events.add_listener(views.changed)
    gw = Gateway(
        settings=settings,
        store=store,
        catalog=catalog,
        providers=providers,
        storage=storage,
        keyring=keyring,
        service=service,
        scheduler=scheduler,
        signer=signer,
        breakers=breakers,
        janitor=janitor,
        events=events,
        waiting=waiting,
        webhooks=webhooks,
        metrics=metrics,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        await asyncio.to_thread(tls_context)  # the outgoing clients' CAs, off the event loop
        try:
            secret = settings.secret_key or await store.set_meta_if_absent(
                "secret_key", secrets.token_hex(32)
            )
            signer.rekey(secret.encode())
            first_key = await keyring.bootstrap()
            if first_key is not None:
                announce_first_key(first_key)
            if start_scheduler:
                await scheduler.start()
                janitor.start()
                webhooks.start()
            if lag is not None:
                lag.start()
            yield
        finally:
            if lag is not None:
                await lag.stop()
            await janitor.stop()
            await scheduler.stop(grace=10.0)
            await webhooks.stop()
            for provider in providers.values():
                with contextlib.suppress(Exception):
                    await provider.aclose()
            await fetcher.aclose()
            await storage.aclose()
            await store.close()

    webhook_secrets = WebhookSecrets(store)
    uploads = Uploads(storage, links, settings.max_input_bytes)
    routes: list[BaseRoute] = [  # the router tries them in order: the hot ones first
        *JobsAPI(service, links, settings.max_body_bytes, waiting, views).routes(),
        *ProviderWebhooksAPI(providers, relay, observer).routes(),
        *ImagesAPI(
            service,
            waiting,
            storage,
            links,
            max_body=settings.max_body_bytes,
            sync_wait=settings.sync_wait_seconds,
        ).routes(),
        *EditsAPI(
            service,
            waiting,
            storage,
            links,
            uploads,
            max_body=settings.max_body_bytes,
            max_upload=settings.max_upload_bytes,
            sync_wait=settings.sync_wait_seconds,
        ).routes(),
        *VideosAPI(
            service,
            storage,
            links,
            uploads,
            max_body=settings.max_body_bytes,
            max_upload=settings.max_upload_bytes,
        ).routes(),
        *BackServTasksAPI(
            service,
            links,
            settings.max_body_bytes,
            models=settings.submit_task_models,
            auth=settings.submit_task_auth,
            trusted_owner=settings.submit_task_owner,
        ).routes(),
        *JobEventsAPI(
            service,
            waiting,
            lambda job: render_job(job, links),
            max_seconds=settings.job_timeout_seconds,
        ).routes(),
        *ModelsAPI(catalog, availability).routes(),
        *FilesAPI(
            storage,
            signer,
            service,
            redirect=settings.storage_delivery == "redirect",
            presign_seconds=settings.storage_presign_seconds,
        ).routes(),
        *WebhookSecretsAPI(webhook_secrets).routes(),
        *KeysAPI(KeyManager(store), settings.max_body_bytes, catalog.currency).routes(),
        *UsageAPI(Usage(store, catalog.currency), KeyManager(store)).routes(),
        *TasksAPI(
            service,
            ModelChooser(catalog, settings.tasks_models, FalAppPolicy(settings.tasks_fal_apps)),
            Renderer(catalog, links, storage),
            webhook_secrets,
            verifier=_tasks_verifier(settings),
            max_body=settings.max_body_bytes,
        ).routes(),
        *HealthAPI(
            lambda: store.get_meta("secret_key"),
            lambda: scheduler.running,
            lambda: credential_report(catalog, availability),
            storage.check,
            metrics=metrics,
            metrics_token=settings.metrics_token,
        ).routes(),
        *WebPages(
            catalog,
            availability,
            base_url=settings.base_url,
            public_url=settings.public_url,
            latencies=Latencies(service.recent_latencies),
            render_example=render_example,
        ).routes(),
        *OpenAPIDocument(
            DocumentOptions(
                base_url=settings.base_url,
                submit_task_keyed=settings.submit_task_auth == "key",
                metrics_enabled=settings.metrics_enabled,
                metrics_token=bool(settings.metrics_token),
            ),
            catalog,
        ).routes(),
    ]
    handlers: dict[Any, Any] = {
        GatewayError: gateway_error_handler,
        HTTPException: http_error_handler,
        Exception: unhandled_error_handler,
    }
    # one layer for the request id and the latency histogram (it measures the fair-share
    # wait too); then the optional access log (its lines carry the id), then the fair share
    latency = None if metrics is None else HttpLatency(metrics.http_latency)
    middleware = [Middleware(RequestIdMiddleware, latency=latency)]
    if settings.access_log:
        middleware.append(Middleware(AccessLogMiddleware))
    if settings.max_running_requests_per_key:
        middleware.append(Middleware(FairShare, per_caller=settings.max_running_requests_per_key))
    # innermost: a poll whose answer is cached skips the exception layer, router and objects
    poll = next(r for r in routes if getattr(r, "path", None) == "/v1/jobs/{job_id}")
    middleware.append(Middleware(PollShortcut, views=views, keyring=keyring, route=poll))
    # then a submit: its route's handler, without the exception layers and the router's walk
    submit = next(r for r in routes if isinstance(r, Route) and r.path == SUBMIT_PATH)
    middleware.append(
        Middleware(
            SubmitShortcut,
            path=SUBMIT_PATH,
            endpoint=submit.endpoint,
            route=submit,
            handlers=handlers,
        )
    )
    app = Starlette(
        routes=routes,
        exception_handlers=handlers,
        lifespan=lifespan,
        middleware=middleware,
    )
    app.state.gateway = gw
    app.state.keyring = keyring
    return app


def announce_first_key(key: str) -> None:
    bar = "=" * 72
    print(
        f"\n{bar}\nNo API key existed, so one was created. It is shown only this once:\n\n"
        f"    {key}\n\nSend it as 'Authorization: Bearer <key>'. "
        f"Create more with 'backserv keys create'.\n{bar}\n",
        file=sys.stderr,
        flush=True,
    )


def _tasks_verifier(settings: Settings) -> JWTVerifier | None:
    """The Tasks API's JWT check; None without a secret (its routes then answer 503)."""
    if not settings.tasks_jwt_secret:
        return None
    return JWTVerifier(
        settings.tasks_jwt_secret,
        issuer=settings.tasks_jwt_issuer,
        audience=settings.tasks_jwt_audience,
        leeway=settings.tasks_jwt_leeway_seconds,
        require_exp=not settings.tasks_jwt_allow_no_exp,
    )


def render_example(prompt: str) -> bytes:
    """A catalog example's prompt, drawn by the sandbox (the web catalog's cards)."""
    return render_image(prompt, seed=7, width=384, height=256)
