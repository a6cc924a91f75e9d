"""Drawing the attention preview (Pillow)."""
