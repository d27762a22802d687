"""The edge of credit-rating: storage, ratings, sharing, the HTTP API and the command line.

    core/      settings, database, tables, migrations, clock, the error tree
    records/   institutions and findings: the system of record, imports
    sharing/   the outbox and its delivery to the city platform
    ratings/   snapshots: compute, publish (queueing the delivery), correct, verify; dry runs
    api/       the HTTP API: app, dependencies, schemas, problems, keys, caches, routes
    cli/       the `credit-rating` command

Each part imports only parts above it in this list (and `scoring`); a test holds it to that.
"""
