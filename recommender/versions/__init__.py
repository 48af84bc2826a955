"""The training layer's services: trained versions of strategies, from a run to the version serving.

- ``specs``: settings become a run's parameters (the strategy spec: key, class, params).
- ``records``: locks and run records (heartbeats, stale cleanup, starting and taking over a run).
- ``run``: one run (snapshot → held-out check → fit → save → guarded activation).
- ``guardrail``: the verdict, activate, rollback, retire, and the activation stamp serving reads.
- ``live``: how the active versions do on users who arrived after they were trained.

Nothing here enqueues Celery work: ``recommender.jobs`` (the entry points' one door) and
``recommender.tasks`` (the tasks and their canvases) do. See docs/architecture.md.
"""
