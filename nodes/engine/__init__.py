"""The ComfyUI-facing A&E engine: the sampler wrapper, the run, the gradient pass and what it is built of."""
