"""A/B record (not project code): bench.jax_suite with the ViT's class-token-only last block
(76a55f6) turned off by ``EVERY_TOKEN=1`` (the encoder then returns every token and the pool takes
the class token's row, as before 76a55f6); ``EVERY_TOKEN=0`` runs the code as committed.

    EVERY_TOKEN=1 python prune_ab.py --json out.json --suites train --train-batches 256 \\
        --only '^jax/train/lora-r8@256$'
"""
import os
import sys

from experiments.models import vit

EVERY_TOKEN = os.environ.get("EVERY_TOKEN", "0") == "1"
if EVERY_TOKEN:
    _encoder = vit.Encoder

    def _every_token(config, num_tokens, out_tokens, *, name):
        return _encoder(config, num_tokens, None, name=name)

    vit.Encoder = _every_token

if __name__ == "__main__":
    from bench import jax_suite

    print(f"EVERY_TOKEN={int(EVERY_TOKEN)}", flush=True)
    sys.exit(jax_suite.main(sys.argv[1:]))
