"""Measures of generated audio against ground truth (`vab eval`).

generated_audio (pairs generated and reference clips and scores them), metrics (onsets, class
judge, Frechet distance, silence and clipping), melspec (log-mel spectrograms in torch).

May import: vabcli.tasks, vabcli.generation, vabcli.training, vabcli.model, vabcli.encoders,
vabcli.data, vabcli.media, vabcli.core, vabcli.config.
"""
