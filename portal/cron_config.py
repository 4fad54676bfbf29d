"""Periodic work for RQ's scheduler: ``rq cron portal.cron_config --url $REDIS_URL``.

Registers every ``@jobs.periodic`` task at its interval on the ``default`` queue; workers run
them through ``jobs.execute`` like any other job. ``flask portal tick`` runs the same tasks once.
"""

from __future__ import annotations

from rq import cron

from portal import create_app, jobs

# Building the app imports every package, so every periodic task is registered.
create_app()

for task in jobs.periodic_tasks():
    cron.register(jobs.execute, "default", args=(task.name,), interval=task.every, name=task.name)
