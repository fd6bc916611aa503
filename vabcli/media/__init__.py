"""Video and audio files through ffmpeg: finding the binary, probing, decoding frames and audio,
extracting into the cache, muxing audio beside an untouched video stream, and turning
command-line inputs into video paths.

ffmpeg (the binary), probe (streams, duration, frame rate), decode (one ffmpeg process straight to
files), extract (`vab extract`: frames and audio into the cache), mux (`vab mux`), inputs (files,
folders and globs to videos), testing (small videos from ffmpeg's own sources, for tests).

May import: vabcli.core, vabcli.config.
"""
