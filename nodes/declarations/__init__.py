"""The pack's nodes as ComfyUI sees them: one file per node, and the A&E inputs they share."""
