"""The one-read kernel (peft_core.one_read) compiled for sm_90 on a machine without a GPU.

Two steps, two interpreters (the project's venv has jax, another has upstream triton):

    python triton_sm90.py lower OUT_DIR TILES...        # project venv: Triton IR per tile shape
    /tmp/t35/bin/python triton_sm90.py compile OUT_DIR  # venv with `pip install triton==3.5.1`

``lower`` exports ``one_read.products`` for CUDA (ViT-B/16 fc1's dy at batch 256, bf16, rank
8) with Pallas' debug output on and keeps the printed Triton module as OUT_DIR/<tiles>.ttir.
``compile`` compiles each with triton for sm_90 (the warps and stages of its name), then runs
the bundled ptxas -v on the PTX, and prints a line per tile shape: shared memory, registers,
spills, and the PTX's counts of wgmma / mma.sync / cp.async / cp.async waits.
"""

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

M, N, R = 50688, 3072, 8


def lower(out: Path, specs: list[str]) -> None:
    import functools

    import jax
    import jax.numpy as jnp
    from jax.experimental import pallas as pl

    from peft_core import one_read

    jax.default_backend = lambda: "gpu"  # Triton's compiler params, not the interpreter
    one_read.SHARED_MEMORY = 1 << 30  # lower tiles over the limit too, to see what they need
    one_read.pl.pallas_call = functools.partial(pl.pallas_call, debug=True)
    args = [jax.ShapeDtypeStruct(s, jnp.bfloat16) for s in ((M, N), (N, R), (M, R))]
    triton = "__gpu$xla.gpu.triton"
    for spec in specs:
        tiles = one_read.Tiles(*map(int, spec.split(",")))
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            jax.export.export(
                jax.jit(lambda a, f, w, t=tiles: one_read.products(a, f, w, t)),
                platforms=["cuda"],
                disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(triton)],
            )(*args)
        text = printed.getvalue()
        module = text[text.index("\n", text.index("The Triton module")) + 1 :]
        module = re.sub(r" loc\(#loc\d*\)| \[unknown\]|" + r' "[^"\n]*"\(#loc\d+\)', "", module)
        lines = [line for line in module.splitlines() if not line.startswith("#loc")]
        clean = "\n".join(lines[: lines.index("}") + 1])
        (out / f"{spec.replace(',', '_')}.ttir").write_text(clean)
        print("lowered", spec)


def compile_all(out: Path) -> None:
    import triton
    from triton.backends.compiler import GPUTarget

    ptxas = Path(triton.__file__).parent / "backends/nvidia/bin/ptxas"
    print(f"triton {triton.__version__}, sm_90; rows,blocks,cols,warps,stages at rank {R}")
    for path in sorted(out.glob("*.ttir")):
        rows, blocks, cols, warps, stages = map(int, path.stem.split("_"))
        kernel = triton.compile(str(path), target=GPUTarget("cuda", 90, 32),
                                options=dict(num_warps=warps, num_stages=stages))
        ptx = kernel.asm["ptx"]
        (out / f"{path.stem}.ptx").write_text(ptx)
        report = subprocess.run([str(ptxas), "--gpu-name", "sm_90a", "-v", str(out / f"{path.stem}.ptx"),
                                 "-o", "/dev/null"], capture_output=True, text=True).stderr
        regs = re.search(r"Used (\d+) registers", report)
        spill = re.search(r"(\d+) bytes spill stores", report)
        counts = {k: ptx.count(k) for k in ("wgmma.mma_async", "mma.sync", "cp.async.cg",
                                             "cp.async.wait_group")}
        print(f"{rows},{blocks},{cols},{warps},{stages}: shared {kernel.metadata.shared} B, "
              f"registers {regs.group(1) if regs else '?'}, spill stores "
              f"{spill.group(1) if spill else '?'} B, {counts}")


if __name__ == "__main__":
    command, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    lower(out, sys.argv[3:]) if command == "lower" else compile_all(out)
