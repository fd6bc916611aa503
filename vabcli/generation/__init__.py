"""From a video's features to its dubbed files (`vab generate`).

maskgit (iterative parallel sampling with classifier-free guidance, over any logits function),
windows (cutting a clip of any length into the model's windows), windowed (the sampler run window
by window), prompts (which tokens to generate: all, after kept audio, or gaps), dubber (one clip:
prepare, sample, finish), pipeline (many clips through one dubber, overlapped), audio_file (tokens
to an audio file exactly as long as the video), outputs (where each clip goes, what may be skipped,
clip locks).

May import: vabcli.training, vabcli.model, vabcli.encoders, vabcli.data, vabcli.media, vabcli.core,
vabcli.config.
"""
