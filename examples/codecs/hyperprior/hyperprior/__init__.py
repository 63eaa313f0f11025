"""The codeclab learned codec (scale hyperprior), exported by `codeclab codec export-learned`."""
