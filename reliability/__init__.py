"""The reliability suite: ``python -m reliability [--quick]`` (``make reliability``).

Trials, each in its own module:

- :mod:`reliability.kills`: SIGKILL torture of a writer process (and of the server);
- :mod:`reliability.disks`: a full tmpfs, a read-only disk, ``FileStore(read_only=True)``;
- :mod:`reliability.hostile`: hypothesis property tests of the public API with hostile input;
- :mod:`reliability.stateful`: random call sequences against a reference model;
- :mod:`reliability.model_faults`: HTTP errors, dropped, malformed and stalled answers;
- :mod:`reliability.outages`: Redis and PostgreSQL stalled (SIGSTOP) and killed mid-turn.

Each returns rows of :class:`reliability._report.Row`: what it tried and what it lost.
"""
