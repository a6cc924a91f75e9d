"""Tiny random-weight CLIP and BLIP saved as local Hugging Face folders, in the layouts of
openai/clip-vit-base-patch16 and Salesforce/blip-image-captioning-base, so that the metrics' real
`from_folder` loading path runs in tests without a download.

Both are built from transformers configs with tiny widths (the real models' architectures and special-token
conventions, not their sizes). Their weights are drawn by harness/weights.py, seeded per tensor name, rather than
by transformers' initialisers, which change between transformers versions (4.x gave the tiny BLIP degenerate
captions). The CLIP tokenizer is the real CLIP BPE (ComfyUI's bundled comfy/sd1_tokenizer vocabulary); the BLIP
tokenizer is a BERT WordPiece tokenizer over a small vocabulary of whole words written here, with BLIP's [DEC]
start token and [ENC] token added as LAVIS adds them to bert-base-uncased.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from harness.host import find_comfyui
from harness.weights import fill_random_

CLIP_IMAGE_SIZE = 32   # the real ViT-B/16 sees 224x224
BLIP_IMAGE_SIZE = 32   # the real BLIP base sees 384x384

BLIP_WORDS = ("a picture of the an and with on in at is two cat cats dog frog bird horse car red blue green table "
              "sitting standing next to room grass water street white black small large").split()
BLIP_VOCAB = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BLIP_WORDS, "[DEC]", "[ENC]")


def _tiny_layers(hidden: int = 32) -> dict:
    return {"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": 2, "num_attention_heads": 2}


def save_with_drawn_weights(model, path: Path, seed: int) -> None:
    fill_random_({k: v for k, v in model.state_dict().items() if v.is_floating_point()}, seed)
    model.eval().save_pretrained(path)


def tiny_clip_folder(path: str | Path) -> Path:
    """A random CLIP (ViT with 8x8 patches of 32x32 images, a 2-layer text tower over CLIP's 49408 BPE tokens, a
    77-token context and 16-dim projections) with its tokenizer, saved to `path`, which is returned."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    path = Path(path)
    tokenizer = CLIPTokenizer.from_pretrained(find_comfyui() / "comfy" / "sd1_tokenizer", model_max_length=77)
    config = CLIPConfig(
        text_config={**_tiny_layers(), "vocab_size": len(tokenizer), "max_position_embeddings": 77,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={**_tiny_layers(), "image_size": CLIP_IMAGE_SIZE, "patch_size": 8},
        projection_dim=16,
    )
    save_with_drawn_weights(CLIPModel(config), path, seed=0)
    tokenizer.save_pretrained(path)
    return path


def tiny_blip_folder(path: str | Path) -> Path:
    """A random BLIP captioner (ViT with 8x8 patches of 32x32 images, a 2-layer BERT decoder with cross-attention)
    with its BERT tokenizer, saved to `path`, which is returned."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration

    path = Path(path)
    with tempfile.TemporaryDirectory() as vocab_dir:
        (Path(vocab_dir) / "vocab.txt").write_text("\n".join(BLIP_VOCAB) + "\n", encoding="utf-8")
        tokenizer = BertTokenizer.from_pretrained(vocab_dir, do_lower_case=True, bos_token="[DEC]",
                                                  additional_special_tokens=["[ENC]"])
    config = BlipConfig(
        text_config={**_tiny_layers(), "vocab_size": len(BLIP_VOCAB), "encoder_hidden_size": 32,
                     "max_position_embeddings": 64, "bos_token_id": tokenizer.bos_token_id,
                     "sep_token_id": tokenizer.sep_token_id, "eos_token_id": tokenizer.sep_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={**_tiny_layers(), "image_size": BLIP_IMAGE_SIZE, "patch_size": 8},
        projection_dim=16,
    )
    save_with_drawn_weights(BlipForConditionalGeneration(config), path, seed=1)
    tokenizer.save_pretrained(path)
    return path
