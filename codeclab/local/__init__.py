"""Local mode: the synthesized workflow running against a local AWS emulator (moto)."""

# In the runs folder while a `codeclab run` or `codeclab serve` is up: where its HTTP API answers.
ENDPOINT_FILE = ".local-api.json"
