"""blockdct: the 8x8 block DCT of examples/custom_codec as a codec package, its transform read from weights."""
