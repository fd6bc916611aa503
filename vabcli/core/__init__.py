"""The ground every layer stands on, knowing nothing of media or models.

errors (VabError and its kinds), cancel (the run-wide interrupt), temps (temporary names and the
leftovers of killed runs), atomic (outputs renamed into place only when whole), cache (the
content-addressed cache) and cache_admin (`vab cache info|prune`), jobs (one job over many inputs,
a failure never stopping the rest), batcher (one model fed batches gathered from many threads),
threads (sharing the cores), builtin (where the bundled weights live), device (torchrun's
environment and the device a process computes on), process (ending a process at once).

May import: vabcli.config.
"""
