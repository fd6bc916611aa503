"""The synthetic world and the bundled model trained on it.

scenes (objects whose look and sound share their timing, with ground truth), synth (`vab synth`:
a data set of the world as MP4s and a manifest), train_codec and train_vision (the bundled codec
and image tower), make_model (`make model`: the whole bundled model from scratch).

May import: vabcli.evaluation, vabcli.tasks, vabcli.generation, vabcli.training, vabcli.model,
vabcli.encoders, vabcli.data, vabcli.media, vabcli.core, vabcli.config.
"""
