"""Benchmark of A&E sampling against plain sampling and diffusers' A&E pipeline (issue 7); see README.md."""
