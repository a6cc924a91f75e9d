"""Prompts as the UNet sees them: tokens and their context indices, for the node and the token picker."""
