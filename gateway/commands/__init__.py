"""The ``backserv`` subcommands other than ``serve`` (gateway/cli.py builds the parser from
them and dispatches), one module per concept:

    run.py       ``backserv run``: a client of a running gateway (client.py), showing the
                 job's progress (progress.py) and saving its files
    keys.py      ``backserv keys``: key management against the database
    jobs.py      ``backserv jobs``: every owner's jobs, against the database
    models.py    ``backserv models``: the catalog file
    output.py    aligned tables with headers (rich), ``--json``, notes on stderr
    database.py  opening the store the settings name, for keys and jobs
"""
