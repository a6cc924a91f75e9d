"""The A&E paper's evaluation metrics (Chefer et al. 2023, section 5 and the official repository's metrics/),
ported to Hugging Face transformers so that they run inside ComfyUI without OpenAI's `clip` or LAVIS.

templates.py        the 80 ImageNet prompt templates of the CLIP text feature
halves.py           a prompt's two halves ("a cat" / "a frog") for the minimum-object score
model_folder.py     the local model folders and the error that says what to download
preprocess.py       CLIP's and BLIP's image preprocessing on ComfyUI IMAGE tensors, in torch
clip_similarity.py  ClipScorer: full-prompt, half-prompt and caption similarities (CLIP ViT-B/16)
blip_caption.py     BlipCaptioner: BLIP captions with LAVIS's default decoding

Plain torch and transformers: nothing here imports ComfyUI (nodes/declarations/clip_score.py and
blip_caption.py are the adapters).
"""
