"""A/B record (not project code): ``bench.profile`` with the class-token-only last block turned
off by ``EVERY_TOKEN=1`` (as in prune_ab.py)."""
import sys

import prune_ab  # noqa: F401  (patches the ViT when EVERY_TOKEN=1)

if __name__ == "__main__":
    from bench import profile

    print(f"EVERY_TOKEN={int(prune_ab.EVERY_TOKEN)}", flush=True)
    sys.exit(profile.main(sys.argv[1:]))
