"""Measures of generated audio against ground truth, and of the fine-tuned backbone (`vab eval`).

generated_audio (pairs generated and reference clips and scores them: `evaluate_generated`),
metrics (onsets, class judge, Frechet distance, silence and clipping), melspec (log-mel
spectrograms in torch), backbone (retrieval and classification scored on a reference manifest:
`evaluate_backbone`), options (EvalOptions, without torch).

May import: vabcli.tasks, vabcli.generation, vabcli.training, vabcli.model, vabcli.encoders,
vabcli.data, vabcli.media, vabcli.core, vabcli.config.
"""
