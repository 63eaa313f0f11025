"""The codeclab learned video codec, exported by `codeclab codec export-learned`."""
