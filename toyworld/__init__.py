"""A synthetic world where Attend-and-Excite can be measured exactly: images of one or two coloured shapes with
captions in the paper's templates (world), a judge that reads back which shapes and colours an image holds
(judge), a small SD1-family model in ComfyUI's own classes that is trained on it (unet, text_encoder, vae,
model, train), and the device job's sanity grid (sanity). docs/efficacy_design.md explains the choices.
"""
