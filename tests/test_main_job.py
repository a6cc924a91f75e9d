"""The README's main job (tests/dev/main_job.py) with its defaults: example (b) on the toy model in a real server,
leaving the standard and A&E images and their attention previews (2 steps here instead of 50, for time)."""
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent / "dev"))
import main_job  # noqa: E402


def test_the_default_main_job_leaves_standard_and_ae_images_with_previews(tmp_path):
    main_job.main(["--steps", "2", "--out", str(tmp_path)])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["attention_preview_ae.png", "attention_preview_standard.png", "image_ae.png",
                     "image_standard.png"]
    standard, ae = (np.asarray(Image.open(tmp_path / f"image_{m}.png"), dtype=np.int16) for m in ("standard", "ae"))
    assert standard.shape == ae.shape == (256, 256, 3)
    assert np.abs(standard - ae).max() > 0, "A&E left the image unchanged"


def test_the_main_job_refuses_a_missing_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main_job.parse_args(["--ckpt", str(tmp_path / "nope.safetensors")])
    assert exit_.value.code == 2
    assert "is not a file" in capsys.readouterr().err
