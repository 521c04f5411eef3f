"""A/B driver (not library code): bench.jax_suite with one_read's default tiles from
ONE_READ_TILES ("rows,blocks,cols,warps,stages") and the kernel only on matrices at least
ONE_READ_MIN_WIDTH columns wide (narrower ones take XLA's dots)."""
import os
import sys

from peft_core import one_read

if os.environ.get("ONE_READ_TILES"):
    one_read.TILES = one_read.Tiles(*map(int, os.environ["ONE_READ_TILES"].split(",")))
min_width = int(os.environ.get("ONE_READ_MIN_WIDTH", "0"))
_fits = one_read.fits
one_read.fits = lambda m, width, r, tiles: width >= min_width and _fits(m, width, r, tiles)
print(f"one_read.TILES={one_read.TILES} min width {min_width}", flush=True)

from bench.jax_suite import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
