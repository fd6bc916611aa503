"""What the pre-trained backbone is fine-tuned into (VAB's "beyond").

finetune (what the fine-tune trainers share), contrastive (audio-visual embeddings by InfoNCE),
classify (a linear head on the first layers), embedding (whole clips to unit vectors),
embedding_file (the `.npz` of `vab embed`), retrieval (top-k search in chunks, recall@k), latents
(clips tokenized with a checkpoint's own encoders, and its answer per clip), answers (`vab
embed`, `vab retrieve`, `vab classify` as functions), options (their options, without torch).

May import: vabcli.training, vabcli.model, vabcli.encoders, vabcli.data, vabcli.media, vabcli.core,
vabcli.config.
"""
