"""Describing data sets: manifests (JSON Lines, one clip per line; read in manifest, written
from folder trees and CSVs in manifest_sources), the clip items every command works on (whole
videos or manifest segments), and shares of them for processes side by side (shards).

May import: vabcli.media, vabcli.core, vabcli.config.
"""
