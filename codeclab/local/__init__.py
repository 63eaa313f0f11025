"""Local mode: the synthesized workflow running against a local AWS emulator (moto)."""
