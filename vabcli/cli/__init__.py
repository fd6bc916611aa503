"""The `vab` command line: each command parses its options, builds an options object, makes one
library call and prints. Nothing below imports this package.

main (the entry point and exit codes), common (the app and option types shared by commands),
console (results on stdout, progress and errors on stderr), one module per command or group
(tokenize, train, finetune, embed, classify, eval, generate, synth, models, cache), completions
(the shell scripts in completions/), demo (`make demo`).

May import: vabcli.world, vabcli.evaluation, vabcli.tasks, vabcli.generation, vabcli.training,
vabcli.model, vabcli.encoders, vabcli.data, vabcli.media, vabcli.core, vabcli.config.
"""
