"""All configuration: one pydantic-settings class, env prefix ``BACKSERV_``, reads ``.env``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.inline_media import DEFAULT_MAX_INPUT_BYTES
from gateway.netguard import AllowList
from gateway.observability.logs import check_level
from gateway.storage.bucket import BucketConfig

#: jobs each provider runs at once; the sandbox is in-process and nearly free, so its lane is
#: wide (at 8 its zero-latency load test was bound by job latency, not by CPU)
DEFAULT_CONCURRENCY = {"sandbox": 64, "fal": 16, "replicate": 16, "local": 1}
MIN_RECORD_TTL = 24 * 3600


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BACKSERV_",
        env_file=".env",
        extra="ignore",
        validate_default=True,
        populate_by_name=True,
    )

    host: str = "0.0.0.0"
    port: int = Field(4093, ge=1, le=65535)
    database_url: str = "sqlite:///data/backserv.db"
    catalog_path: Path = Path("catalog.toml")
    storage_dir: Path = Path("data/files")
    #: result files in an S3-compatible bucket instead of storage_dir: s3://bucket[/prefix]
    #: (needed when replicas run on several machines; see the README's "Several machines")
    storage_url: str | None = None
    #: how a result URL serves a file kept in a bucket: "stream" (through the gateway) or
    #: "redirect" (a 307 to a presigned URL of the object, valid storage_presign_seconds)
    storage_delivery: Literal["stream", "redirect"] = "stream"
    storage_presign_seconds: int = Field(900, ge=60, le=7 * 24 * 3600)
    #: the bucket's endpoint (MinIO, R2, ...); unset: AWS. Also read from AWS_ENDPOINT_URL
    s3_endpoint_url: str | None = Field(
        None, validation_alias=AliasChoices("BACKSERV_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL")
    )
    s3_region: str | None = Field(
        None,
        validation_alias=AliasChoices("BACKSERV_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    )
    #: credentials; unset: the AWS_* variables, else the machine's role (instance profile)
    s3_access_key_id: str | None = Field(
        None, validation_alias=AliasChoices("BACKSERV_S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID")
    )
    s3_secret_access_key: str | None = Field(
        None,
        validation_alias=AliasChoices("BACKSERV_S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
    )
    s3_session_token: str | None = Field(
        None, validation_alias=AliasChoices("BACKSERV_S3_SESSION_TOKEN", "AWS_SESSION_TOKEN")
    )
    #: the time limit of one request to the bucket (a part of an upload, a read, a probe)
    s3_timeout_seconds: float = Field(30.0, gt=0)
    public_url: str | None = None
    api_keys: str = ""
    #: critical, error, warning, info or debug (any case)
    log_level: str = "info"
    #: json: one JSON object per line (ts, level, logger, message, request_id, job_id, ...);
    #: text: the classic human-readable line
    log_format: Literal["json", "text"] = "json"
    #: one INFO line per HTTP request answered (method, path, status, duration, client),
    #: on the backserv.access logger (gateway/observability/access_log.py)
    access_log: bool = False
    #: serve GET /metrics (Prometheus); with metrics_token set, it asks for that Bearer token
    metrics_enabled: bool = True
    metrics_token: str | None = None
    secret_key: str | None = None

    # how long POST /v1/images/generations waits for its job before answering 504 with the
    # job id (the job goes on; the client can poll it)
    sync_wait_seconds: float = Field(60.0, gt=0, le=600)

    # GET /v1/jobs/{id} answers from a per-process cache of rendered jobs. Every change made
    # through this process (on PostgreSQL: through any replica, by LISTEN/NOTIFY, within
    # milliseconds) drops the job's entry at once; an entry also expires after this many
    # seconds, the most an answer can be stale when a change notice is lost (the listener
    # reconnecting) or another process writes the SQLite file. 0 turns the cache off
    job_cache_seconds: float = Field(10.0, ge=0, le=60)
    #: most rendered jobs the cache holds (least recently stored dropped first)
    job_cache_size: int = Field(10_000, ge=0)

    # a stored API key, once read, is kept in memory (by its hash) for up to this many seconds,
    # so a poll or a submit does not read the key's row. Revocations and changes of limits
    # still apply from the next request: every change of a key moves the store's key epoch
    # (a trigger on SQLite, also for `backserv keys` in another process; LISTEN/NOTIFY on
    # PostgreSQL, where nothing is kept while the listener is down) and the cache holds only
    # within one epoch. This bounds how long an entry lives, as a backstop. 0 turns it off:
    # the key's row is read at every request
    auth_cache_seconds: float = Field(60.0, ge=0, le=3600)

    # per-key limit on job creation (token bucket); 0 turns it off. These are the defaults:
    # a stored key may have its own (POST/PATCH /v1/keys, backserv keys create|update). On
    # PostgreSQL the buckets live in the database, so the limit holds across replicas.
    # 10/s is Replicate's own create limit (600 a minute); the burst lets a script submit
    # a batch of 50 at once
    rate_limit_per_second: float = Field(10.0, ge=0)
    rate_limit_burst: int = Field(50, ge=1)
    #: most jobs one API key may have QUEUED or PROCESSING at once (on every replica); a
    #: submit over it is a 429 (code too_many_active_jobs); 0 turns the cap off
    max_active_jobs_per_key: int = Field(1000, ge=0)
    #: most long-polls (?wait=N) and event streams one key may hold open at once; one more
    #: is a 429 (code too_many_waiters); 0 turns the cap off
    max_waiters_per_key: int = Field(100, ge=0)
    #: most requests of one key (its Authorization header) the process runs at once;
    #: more wait their turn, held in the HTTP server (gateway/edge_share.py), so one
    #: flooding key cannot slow the others' polls (waits are not counted: see
    #: max_waiters_per_key); 0 turns it off
    max_running_requests_per_key: int = Field(2, ge=0)

    # the HTTP edge (gateway/edge.py), before a request reaches the application
    #: seconds a connection has to send a whole request head (line and headers): 408 after
    header_timeout_seconds: float = Field(10.0, gt=0, le=300)
    #: most bytes of a request line and headers together: 431 above it
    max_header_bytes: int = Field(64 * 1024, ge=4096, le=1024 * 1024)
    #: most client connections open at once (lowered to fit the file-descriptor limit); past
    #: it a request is answered 503 with Retry-After
    max_connections: int = Field(4096, ge=1)

    # request limits
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    #: the most bytes one input image may have: sent inline (a data: URL or base64, decoded
    #: and checked when the job is submitted: 413 above it) or downloaded from its URL
    max_input_bytes: int = Field(DEFAULT_MAX_INPUT_BYTES, ge=1024)
    #: the most bytes of a multipart upload (POST /v1/videos, /v1/images/edits) in all; each
    #: file in it is also held to max_input_bytes
    max_upload_bytes: int = Field(64 * 1024 * 1024, ge=1024)

    # the Back.Serv task face (POST /submit_task, GET /query_task/<id>, ...): "key" asks for
    # a Bearer key as every other face does; "none" is for a trusted network: no key, and
    # every request acts as submit_task_owner
    submit_task_auth: Literal["key", "none"] = "key"
    submit_task_owner: str = Field("trusted-network", min_length=1, max_length=128)
    #: task_type -> catalog model id (JSON), e.g. {"image_creation": "flux-dev"}; start-up
    #: refuses a model that is missing or of another kind. A task type not named here runs
    #: its default (sandbox-image, sandbox-upscale, sandbox-face-swap, sandbox-video) or, in
    #: a catalog without it, the catalog's first model of the task's kind
    submit_task_models: dict[str, str] = Field(default_factory=dict)

    # scheduler
    provider_concurrency: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_CONCURRENCY))
    default_concurrency: int = Field(4, ge=1)
    lease_seconds: float = Field(30.0, gt=0)
    heartbeat_seconds: float = Field(10.0, gt=0)
    scheduler_poll_seconds: float = Field(1.0, gt=0)
    job_timeout_seconds: float = Field(3600.0, gt=0)
    #: how long a route that has a fallback may take (its retries included) before its
    #: request is cancelled at the provider and the next route runs; a route's catalog
    #: option timeout_seconds overrides it; 0: no default (only the job's limit)
    route_timeout_seconds: float = Field(600.0, ge=0)
    max_route_attempts: int = Field(3, ge=1)
    retry_base_seconds: float = Field(0.5, ge=0)
    retry_max_seconds: float = Field(30.0, ge=0)

    # circuit breakers (per route) and waiting when every route is paused
    breaker_failure_threshold: int = Field(5, ge=1)
    breaker_failure_ratio: float = Field(0.5, gt=0, le=1)
    breaker_min_calls: int = Field(10, ge=1)
    breaker_window_seconds: float = Field(60.0, gt=0)
    breaker_cooldown_seconds: float = Field(30.0, gt=0)
    breaker_max_wait_seconds: float = Field(120.0, ge=0)

    # storage of results, and retention: how long finished jobs and their files are kept
    #: result files (and their signed URLs) live this long after the job finished; then the
    #: janitor deletes them and their URLs answer 410. (Formerly file_url_ttl_seconds; the
    #: old variable name is still read.)
    file_ttl_seconds: int = Field(
        24 * 3600,
        ge=60,
        validation_alias=AliasChoices(
            "file_ttl_seconds", "BACKSERV_FILE_TTL_SECONDS", "BACKSERV_FILE_URL_TTL_SECONDS"
        ),
    )
    #: finished job records live this long; at least one day, because a job's record also
    #: holds its Idempotency-Key, which must be kept for at least 24 h
    record_ttl_seconds: int = 7 * 24 * 3600
    #: how often the janitor looks for expired files and records
    purge_interval_seconds: float = Field(300.0, gt=0)
    max_output_bytes: int = Field(200 * 1024 * 1024, ge=1024)

    # hosted providers: credentials under the vendors' own variable names
    fal_key: str | None = Field(None, validation_alias=AliasChoices("FAL_KEY", "BACKSERV_FAL_KEY"))
    fal_queue_url: str = "https://queue.fal.run"
    replicate_api_token: str | None = Field(
        None, validation_alias=AliasChoices("REPLICATE_API_TOKEN", "BACKSERV_REPLICATE_API_TOKEN")
    )
    replicate_base_url: str = "https://api.replicate.com"
    provider_timeout_seconds: float = Field(30.0, gt=0)
    provider_poll_seconds: float = Field(2.0, gt=0)
    #: HTTP calls (submits, status polls, results) in flight at once per hosted provider;
    #: the rest wait their turn; a quarter of them are kept for submits (providers/gate.py)
    provider_max_calls: int = Field(64, ge=2, le=1000)
    #: ask fal and Replicate to call the gateway back when a request ends (their webhooks)
    #: rather than only polling it. Turn on only when BACKSERV_PUBLIC_URL (required then)
    #: reaches this gateway from the provider's side, i.e. from the internet: deliveries go
    #: to {public_url}/v1/provider_webhooks/fal and .../replicate, each verified with the
    #: vendor's signature. Polling stays on, rarely, as the safety net for a lost delivery
    provider_webhooks: bool = False
    #: with provider webhooks on, each request is still polled this often: the safety net
    #: that finds a lost delivery within this many seconds
    provider_webhook_poll_seconds: float = Field(30.0, gt=0)
    #: where fal publishes the keys its webhooks are signed with (a JWKS)
    fal_webhook_jwks_url: str = "https://rest.fal.ai/.well-known/jwks.json"
    #: the secret Replicate signs webhooks with (whsec_...); unset, it is read once from
    #: GET /v1/webhooks/default/secret with REPLICATE_API_TOKEN
    replicate_webhook_secret: str | None = None

    # the sandbox provider
    sandbox_latency: float = Field(0.5, ge=0)
    sandbox_failure_rate: float = Field(0.0, ge=0, le=1)
    #: bytes the sandbox's renders running at once may hold (by estimate); more wait
    sandbox_memory_bytes: int = Field(512 * 1024 * 1024, ge=64 * 1024 * 1024)
    #: output bytes the sandbox keeps of finished requests for their polls (oldest go first)
    sandbox_keep_bytes: int = Field(256 * 1024 * 1024, ge=0)

    # the local PyTorch provider (pip install '.[local]'); routes may override device/dtype
    #: where relative route targets (model directories) are found; the working directory
    #: when unset
    local_models_dir: Path | None = None
    #: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps
    local_device: str = "auto"
    #: auto (float16 on a GPU, float32 on the CPU), float32, float16 or bfloat16
    local_dtype: str = "auto"
    #: how many loaded pipelines stay in memory; the least recently used is unloaded
    local_max_pipelines: int = Field(1, ge=1)
    #: model directories (comma-separated) loaded at start-up rather than on first use
    local_preload: str = ""
    #: CPU threads torch may use; 0: one fewer than the cores, so the event loop keeps one
    local_cpu_threads: int = Field(0, ge=0)

    # outgoing webhooks (gateway/webhooks/)
    #: hosts and networks a webhook may target although they are not public addresses:
    #: comma-separated host names (``hooks.internal``, ``*.corp.example``) and CIDRs
    webhook_allow: str = ""
    #: how long a delivery is retried (from its creation) before it is marked failed
    webhook_retry_seconds: float = Field(24 * 3600, gt=0)
    #: the first retry's delay; each next one doubles (with jitter), up to 10 minutes
    webhook_retry_base_seconds: float = Field(5.0, gt=0)
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    webhook_concurrency: int = Field(16, ge=1)

    # URLs the gateway fetches itself (input images of sandbox and local routes, provider
    # outputs it mirrors): every one goes through the SSRF guard (gateway/fetch.py)
    #: hosts and networks such a URL may reach although they are not public addresses;
    #: same syntax as webhook_allow
    fetch_allow: str = ""

    # the Tasks API (/api/v1/tasks, gateway/api/tasks/): JWT bearer tokens signed with HS256
    #: the HS256 secret of its tokens (at least 32 bytes); unset, the Tasks API answers 503
    tasks_jwt_secret: str | None = None
    #: when set, a token's ``iss`` / ``aud`` must match
    tasks_jwt_issuer: str | None = None
    tasks_jwt_audience: str | None = None
    #: clock skew allowed when checking ``exp`` and ``nbf``
    tasks_jwt_leeway_seconds: float = Field(30.0, ge=0, le=300)
    #: accept tokens without ``exp`` (valid until the secret changes); off: such a token is a 401
    tasks_jwt_allow_no_exp: bool = False
    #: task type -> catalog model id, e.g. {"GENERATION": "flux-dev"} (checked at start-up);
    #: a task type not named runs the first catalog model of its kind
    tasks_models: dict[str, str] = Field(default_factory=dict)
    #: fal apps a task may name in ``fal_app_id`` although the catalog lists none for it
    #: (glob patterns, comma- or space-separated): ``*`` any (the document's EXPERIMENTAL_FAL
    #: passes its app straight to fal), empty none; a token's ``fal_apps`` claim narrows it
    tasks_fal_apps: str = "*"

    @field_validator("submit_task_auth", mode="before")
    @classmethod
    def _auth_mode_any_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format_any_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        return check_level(value)

    @field_validator("tasks_jwt_secret")
    @classmethod
    def _strong_jwt_secret(cls, value: str | None) -> str | None:
        if value is not None and len(value.encode()) < 32:
            raise ValueError(
                "must be at least 32 bytes: an HS256 secret shorter than the hash is guessable"
            )
        return value

    @field_validator("webhook_allow", "fetch_allow")
    @classmethod
    def _valid_allow_list(cls, value: str) -> str:
        AllowList.parse(value)  # a ValueError names the bad entry
        return value

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError(
                "must be sqlite:///relative/path.db, sqlite:////absolute/path.db or "
                "postgresql://user@host:port/database"
            )
        return value

    @field_validator("storage_url", "s3_endpoint_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("storage_url")
    @classmethod
    def _bucket_url(cls, value: str | None) -> str | None:
        if value is not None:
            BucketConfig.parse(value)  # a ValueError says what is wrong
        return value

    @field_validator("record_ttl_seconds")
    @classmethod
    def _records_outlive_idempotency_keys(cls, value: int) -> int:
        if value < MIN_RECORD_TTL:
            raise ValueError(
                f"must be at least {MIN_RECORD_TTL} (one day): a job's record holds its "
                f"Idempotency-Key, and keys are kept for at least 24 hours"
            )
        return value

    @model_validator(mode="after")
    def _webhooks_need_a_public_url(self) -> Settings:
        if self.provider_webhooks and not self.public_url:
            raise ValueError(
                "BACKSERV_PROVIDER_WEBHOOKS=true needs BACKSERV_PUBLIC_URL: the URL fal and "
                "Replicate reach this gateway at"
            )
        return self

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file (only meaningful with a sqlite:/// URL)."""
        return Path(self.database_url[len("sqlite:///") :])

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://localhost:{self.port}"

    @property
    def bucket(self) -> BucketConfig | None:
        """The result bucket (BACKSERV_STORAGE_URL and the S3 settings), or None: a directory."""
        if self.storage_url is None:
            return None
        return dataclasses.replace(
            BucketConfig.parse(self.storage_url),
            endpoint_url=self.s3_endpoint_url,
            region=self.s3_region,
            access_key_id=self.s3_access_key_id,
            secret_access_key=self.s3_secret_access_key,
            session_token=self.s3_session_token,
            timeout_seconds=self.s3_timeout_seconds,
        )

    @property
    def webhook_allow_list(self) -> AllowList:
        return AllowList.parse(self.webhook_allow)

    @property
    def fetch_allow_list(self) -> AllowList:
        return AllowList.parse(self.fetch_allow)

    def static_api_keys(self) -> list[str]:
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]
