"""The experiment worker: load a clip, encode it to a real bitstream, decode, measure.

Runs as the GPU Batch job's entrypoint and as a plain local process
(`python -m codeclab.worker SPEC.json --out DIR`).
"""
