"""Turning cached clips into a trained checkpoint.

trainer (the loop: optimiser, schedule, validation, checkpoints, exact resume, data-parallel),
distributed (torchrun's process group: join, sum and gather across processes, each process's
share of the clips to tokenize, leave), dataset
(aligned random crops of cached features and tokens, in a resumable order), plan (from a
tokenized manifest to a run: split, model dimensions, the pack of cached latents).

May import: vabcli.model, vabcli.encoders, vabcli.data, vabcli.media, vabcli.core, vabcli.config.
"""
