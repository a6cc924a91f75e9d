class SubtitleStream:
    """Named by comfy_api's video types at import; never made."""
