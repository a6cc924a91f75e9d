"""The paper's evaluation as a runner: the 276 prompts x N seeds x {standard, A&E}, sampled through the pack and
ComfyUI as a library, scored with the metrics of aande_metrics (and any other image metric), on one GPU or many
through torch.distributed. `python -m aande_eval.run --help`; docs/evaluation.md."""
