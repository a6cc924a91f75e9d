"""The local model folders the metrics load, and the error that says what to put there.

The metrics never download: ComfyUI installs are often offline, and a silent multi-hundred-megabyte download
from inside a node is not what a user expects. So a folder is checked before transformers sees it, and a
missing or incomplete one raises an error that names the folder, the Hugging Face repository and the command
that fills it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass


class ModelFolderError(ValueError):
    """A model folder is missing, incomplete or unreadable; the message says what to download and where."""


@dataclass(frozen=True)
class FolderSpec:
    """What a folder in the layout of a Hugging Face repository must hold.

    needs: (what, alternatives) pairs; each alternative is a set of file names that together suffice.
    model_type: config.json's model_type; transformers would load another model's folder with a warning and
    random weights where the names differ, and the scores would be noise.
    """

    repo_id: str
    title: str
    model_type: str
    needs: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...]


_WEIGHTS = ("weights", (("model.safetensors",), ("pytorch_model.bin",)))
_CONFIG = ("config", (("config.json",),))

CLIP_FOLDER = FolderSpec(
    repo_id="openai/clip-vit-base-patch16",
    title="CLIP ViT-B/16",
    model_type="clip",
    needs=(_CONFIG, _WEIGHTS, ("tokenizer", (("tokenizer.json",), ("vocab.json", "merges.txt")))),
)
BLIP_FOLDER = FolderSpec(
    repo_id="Salesforce/blip-image-captioning-base",
    title="BLIP captioning (base)",
    model_type="blip",
    needs=(_CONFIG, _WEIGHTS, ("tokenizer", (("tokenizer.json",), ("vocab.txt",)))),
)


def download_hint(spec: FolderSpec, folder: str) -> str:
    return (f"download {spec.repo_id} into it: `hf download {spec.repo_id} --local-dir \"{folder}\"` (with an "
            f"older huggingface_hub: `huggingface-cli download {spec.repo_id} --local-dir \"{folder}\"`), or copy "
            f"the files of https://huggingface.co/{spec.repo_id} there")


def check_folder(folder: str | os.PathLike, spec: FolderSpec) -> str:
    """The folder as a string when it holds a config of `spec`'s model type and every file `spec` needs; else
    ModelFolderError (another model's folder is named as such before its missing files are listed)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ModelFolderError(f"the {spec.title} model folder {folder} does not exist; {download_hint(spec, folder)}")
    config = os.path.join(folder, "config.json")
    if os.path.isfile(config):
        try:
            with open(config, encoding="utf-8") as f:
                model_type = json.load(f).get("model_type")
        except (OSError, ValueError, AttributeError) as e:
            raise load_error(spec, folder, e) from e
        if model_type != spec.model_type:
            raise ModelFolderError(f"the {spec.title} model folder {folder} holds a model of type {model_type!r}, "
                                   f"not {spec.model_type!r}; pick the folder of {spec.repo_id} or "
                                   f"{download_hint(spec, folder)}")
    missing = [f"{what} ({' or '.join(' + '.join(files) for files in alternatives)})"
               for what, alternatives in spec.needs
               if not any(all(os.path.isfile(os.path.join(folder, f)) for f in files) for files in alternatives)]
    if missing:
        raise ModelFolderError(f"the {spec.title} model folder {folder} is incomplete: it has no "
                               f"{', no '.join(missing)}; {download_hint(spec, folder)}")
    return folder


def load_error(spec: FolderSpec, folder: str, error: Exception) -> ModelFolderError:
    """transformers could not read a folder that has the expected files (a truncated download, another model)."""
    return ModelFolderError(f"the {spec.title} model folder {folder} could not be loaded "
                            f"({type(error).__name__}: {error}); if it is not a complete copy of {spec.repo_id}, "
                            f"{download_hint(spec, folder)}")


def load_pretrained(folder: str | os.PathLike, spec: FolderSpec, model_class: str):
    """(model in eval mode, tokenizer) from a checked local folder, never downloading; model_class names the
    transformers class (imported here: transformers' model modules are slow to import and, on a machine whose
    torchvision is broken, fail at import; the pack must load without them)."""
    folder = check_folder(folder, spec)
    import transformers
    try:
        model = getattr(transformers, model_class).from_pretrained(folder, local_files_only=True)
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise load_error(spec, folder, e) from e
    return model.eval(), tokenizer
