"""The VAB network and its files.

transformer (the multiway transformer: visual prefix + audio token grid in, logits out), towers
(the backbone run on one modality at a time, for embeddings), losses (masked-token prediction,
InfoNCE, classification), checkpoint (folders of safetensors weights + a JSON config, read and
written here).

May import: vabcli.encoders, vabcli.data, vabcli.media, vabcli.core, vabcli.config.
"""
