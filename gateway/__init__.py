"""Back.Serv, an asynchronous jobs gateway for generative media. A map of this package:

The job and its door
    jobs.py          the leaf: Job, Status and the one transition table, Attempt, job ids
    service.py       JobRequest and JobService: the one door every face and the CLI use
                     (submit, get, list, cancel, reroute, set priority, delete, purge files)
    kinds.py         what a job does (image, video, upscale, ...): input models, bounds
    catalog.py       models and their routes (catalog.toml), validated at start-up
    pricing.py       route prices, and what an attempt costs (estimated, then final)
    spend.py         a job's usage, per-key budgets, the usage ledger's rows
    usage.py         usage reports (GET /v1/usage, backserv usage)
    idempotency.py   the Idempotency-Key header, as every face reads it
    waiting.py       long-polls: wait for a job's change, capped per key, ended on hang-up
    events.py        the in-process change hub (fed by the stores; PostgreSQL relays it)
    errors.py        the one exception tree, each class with its HTTP status

Running jobs
    scheduler/       loop.py (claims, leases, recovery), runner.py (the route walk),
                     choice.py (the walk's order: as listed, or cheapest first),
                     summary.py (a failed job's error, route by route), timeouts.py
                     (how long one route may take), retry.py
                     (tenacity timing), breaker.py, availability.py (the one
                     "can this route run now?" rule), janitor.py (retention),
                     shielded.py (state writes that outlive a cancelled caller)
    faults.py        a provider's unexpected exception -> retryable or generic error
    results.py       result files' signed, expiring links (and reading one back as input)
    storage/         result files: the ResultStorage seam, local.py (a directory), s3.py
                     (an S3-compatible bucket, obstore), sources.py (outputs as streams)
    uploads.py       uploaded input files: checked as inline images, kept with the job's files

Storage and providers
    store/           JobStore and its two implementations, sqlite and postgres
    ../providers/    the Provider seam (base.py), sandbox, fal, replicate, local, testing

Faces (each receives only what it uses; see pyproject's [tool.backserv.imports])
    api/             jobs, images (OpenAI; image_size: its n and size), openai_videos (+
                     openai_video_object, openai_video_params, openai_video_content,
                     openai_video_frames: GIF/WebP with Pillow, MP4 with PyAV if installed),
                     openai_edits (+ openai_edit_inputs), openai_sync (the sync wait's
                     answers), multipart (form bodies), job_events (SSE), backserv_tasks, tasks/,
                     files, keys, models, webhook_secrets, provider_webhooks (fal's and
                     Replicate's callbacks), health, openapi/, job_views (the cache of
                     rendered jobs), and the middlewares (request_id, fair_share,
                     poll_shortcut: a cached poll answered before the router)
    web/             the web console: catalog grid, model, playground, side by side, jobs
                     and job pages, /docs (vendored Swagger UI), typical latency
    webhooks/        outgoing webhooks: validation, outbox, sender, signing, secrets

The edge and the caller
    edge.py          the HTTP server's guards: head deadline and size, connection cap
    edge_share.py    each key's share of running requests, held in the HTTP server
    auth.py, auth_cache.py, keys.py, ratelimit.py
                     who is calling (keys, scopes; stored keys kept within the store's key
                     epoch), key management, per-key limits
    netguard.py, fetch.py, inline_media.py, digits.py
                     what the gateway fetches or decodes for a client: the SSRF guard,
                     guarded downloads, data: URLs, digits read as ASCII
    lean_client.py, lean_pool.py, http1.py, lean_net.py
                     the outgoing HTTP path (provider calls, downloads): a small client
                     giving httpx's answers and errors, a connection pool with linear
                     bookkeeping, HTTP/1.1 parsed by httptools, asyncio's own transports

Running it
    app.py           the composition root: create_app(settings, store=, providers=, ...)
    settings.py      one pydantic-settings class (BACKSERV_*)
    cli.py, doctor.py
                     the backserv command (and serve), and its checks of an installation
    commands/        the other subcommands: run (a client of a running gateway: submit,
                     follow with a progress bar, save), keys, jobs, models, spend (usage
                     and budgets); tables, --json
    background.py    the supervised loop of the janitor and the lag monitor
    observability/   logs (joblog: a line per job transition; access_log), Prometheus
                     metrics, and the JobObserver seam the core reports to
"""
