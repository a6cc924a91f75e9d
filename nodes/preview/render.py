"""The preview grid: one row per sample, one captioned heatmap tile per token and optionally a loss-per-step
plot, under a header that says whether A&E optimised or only recorded (Pillow text, no font files)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ...aande_core.heatmap import MapSelection, overlay, recorded_steps, tile_size
from ...aande_core.record import AttentionRecord

GAP = 4                          # pixels between tiles and around the grid
BACKGROUND = (24, 24, 28)        # grid background (RGB 0..255)
NO_IMAGE_BASE = 0.2              # grey the heatmaps blend over when no image is given
TEXT = (235, 235, 235)
LOSS_COLOR = (80, 200, 255)
REFINE_COLOR = (255, 150, 40)
MARK_COLOR = (230, 220, 90)


@dataclass
class Layout:
    tile_hw: tuple[int, int]                                        # heatmap tile size (H, W)
    caption_h: int                                                  # caption band height under each tile
    header_h: int                                                   # header band height at the top
    tiles: list[list[tuple[int, int]]] = field(default_factory=list)  # per row, per token: (x, y) of the tile
    plots: list[tuple[int, int]] = field(default_factory=list)      # per row: (x, y) of the loss plot


def load_font(size: int):
    """Pillow's bundled font: scalable on Pillow >= 10.1, the fixed bitmap font on older ones."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def render_preview(record: AttentionRecord, selection: MapSelection, image: np.ndarray | None,
                   opacity: float, show_loss_plot: bool) -> tuple[np.ndarray, Layout]:
    """Compose the grid (uint8, (H, W, 3)); image is (B, H, W, 3) in 0..1 or None."""
    maps = selection.maps
    batch, n_tokens = maps.shape[:2]
    if image is not None:
        if image.ndim != 4 or image.shape[-1] != 3:
            raise ValueError(f"image must be (batch, height, width, 3), got shape {tuple(image.shape)}")
        if image.shape[0] != batch:
            raise ValueError(f"the image batch has {image.shape[0]} images but the attention record has {batch} "
                             "samples; connect the images decoded from the same sampler run as the record")
    H, W = tile_size(tuple(maps.shape[2:]), None if image is None else image.shape[1:3])
    font = load_font(max(10, min(22, W // 16)))
    line_h = _text_height(font)
    layout = Layout((H, W), line_h + 2 * GAP, line_h + 2 * GAP)
    n_cols = n_tokens + (1 if show_loss_plot else 0)
    grid_w = GAP + n_cols * (W + GAP)
    row_h = H + layout.caption_h + GAP
    grid = Image.new("RGB", (grid_w, layout.header_h + batch * row_h), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    mode = "A&E" if record.attend_and_excite else "standard (A&E off, recorded only)"
    _text(draw, (GAP, GAP), f"{mode} | {selection.kind} | {selection.description}", font, grid_w - 2 * GAP)
    losses = _loss_series(record, batch) if show_loss_plot else None
    for b in range(batch):
        y = layout.header_h + b * row_h
        base = np.full((H, W, 3), NO_IMAGE_BASE, np.float32) if image is None else image[b]
        tiles, peaks = overlay(maps[b], base, opacity)
        row = []
        for t in range(n_tokens):
            x = GAP + t * (W + GAP)
            grid.paste(Image.fromarray(_to_uint8(tiles[t])), (x, y))
            _text(draw, (x, y + H + GAP), selection.labels[t], font, W, f"  max {peaks[t]:.3g}")
            row.append((x, y))
        layout.tiles.append(row)
        if losses is not None:
            x = GAP + n_tokens * (W + GAP)
            steps, loss, refine = losses
            grid.paste(_loss_plot((W, H), steps, loss[:, b], refine[b], selection, record.total_steps, font), (x, y))
            _text(draw, (x, y + H + GAP), f"loss #{b}  {loss[0, b]:.3g} -> {loss[-1, b]:.3g}", font, W)
            layout.plots.append((x, y))
    return np.asarray(grid), layout


def _loss_series(record: AttentionRecord, batch: int):
    """Steps, loss at each step's start (n_steps, B), and per sample the (step, loss) refinement points."""
    steps = recorded_steps(record)
    loss = np.stack([s.loss.detach().float().cpu().reshape(-1).numpy() for s in steps])
    if loss.shape[1] != batch:
        raise ValueError(f"the record's losses cover {loss.shape[1]} samples but its maps {batch}; "
                         "the sampler that filled it is inconsistent, re-run it")
    refine = [[(s.step, v) for s in steps if b < len(s.refinement_losses) for v in s.refinement_losses[b]]
              for b in range(batch)]
    return [s.step for s in steps], loss, refine


def _loss_plot(size, steps, loss, refine, selection: MapSelection, total_steps: int, font) -> Image.Image:
    """Loss per step (polyline), refinement losses as dots at their step, the shown step(s) as a vertical line."""
    W, H = size
    img = Image.new("RGB", (W, H), (16, 16, 22))
    draw = ImageDraw.Draw(img)
    line_h = _text_height(font)
    left, right, top, bottom = GAP * 2, W - GAP * 2, line_h + GAP * 2, H - line_h - GAP * 2
    x_max = max(total_steps - 1, steps[-1], 1)
    y_max = max([float(loss.max())] + [v for _, v in refine] + [1e-6]) * 1.05

    def px(step, value):
        return (left + (right - left) * step / x_max, bottom - (bottom - top) * max(value, 0.0) / y_max)

    draw.line([(left, top), (left, bottom), (right, bottom)], fill=(110, 110, 120))
    if len(selection.steps) == 1:
        x = px(selection.steps[0], 0)[0]
        draw.line([(x, top), (x, bottom)], fill=MARK_COLOR)
    r = max(2, W // 120)
    for step, value in refine:
        x, y = px(step, value)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=REFINE_COLOR)
    points = [px(s, float(v)) for s, v in zip(steps, loss)]
    if len(points) > 1:
        draw.line(points, fill=LOSS_COLOR, width=2)
    else:
        x, y = points[0]
        draw.ellipse([x - r, y - r, x + r, y + r], fill=LOSS_COLOR)
    _text(draw, (left, GAP), f"loss (max {y_max / 1.05:.3g})", font, W - 2 * GAP)
    _text(draw, (left, bottom + GAP), f"step 0..{x_max}", font, W - 2 * GAP)
    return img


def _text_height(font) -> int:
    box = font.getbbox("Ag@|")
    return box[3] + 1


def _text(draw: ImageDraw.ImageDraw, xy, text: str, font, max_w: int, suffix: str = "") -> None:
    """Draw text + suffix on one line, shortening text with '...' to fit max_w pixels, so a long token
    label does not hide the value in the suffix."""
    while text and draw.textlength(text + suffix, font=font) > max_w:
        text = text[:-4] + "..." if len(text) > 4 else ""
    draw.text(xy, text + suffix, fill=TEXT, font=font)


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
