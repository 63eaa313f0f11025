"""Codec packages on the worker's side: a folder or .tar.gz unpacked into a hash-keyed cache, its weights checked.

`manifest` (codec.json's shape, owned by codeclab.experiments.codec_package), `unpack` (materialise a package
safely), `verify` (weights against their sha256) and `pack` (a reproducible .tar.gz). Running a package in the
sandbox is `codeclab.worker.sandbox`'s.
"""
