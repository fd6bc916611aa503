"""Describing data sets: manifests (JSON Lines, one clip per line) and the clip items every
command works on (whole videos or manifest segments).

May import: vabcli.media, vabcli.core, vabcli.config.
"""
