"""The frozen encoders and what they write into the cache.

audio_codec (the `AudioCodec` protocol, EnCodec behind it), image (open_clip image towers), ids
(encoder ids and weight checks without importing torch), network (whether a download can work),
tokenize (`vab tokenize`: visual features and audio tokens of clips, cached), tokenize_clips
(many clips through one tokenizer on a worker pool).

May import: vabcli.data, vabcli.media, vabcli.core, vabcli.config.
"""
