"""Prototype (not project code): the fc2 input gradient and the GELU backward pass as one Hopper
kernel (Pallas Mosaic GPU): out = (a @ b) * gelu'(h), a (M, K), b (K, N), h (M, N), bf16.

In the MLP's backward pass a = dy (the fc2 output gradient), b = W2ᵀ, h = fc1's pre-activation:
XLA writes a @ b (M, N) and a second pass reads it and h and writes the product; here the GEMM's
epilogue reads h (fetched by TMA while the K loop runs) and writes the product once.

    python3 gelu_grad_matmul.py [--interpret] [--m M]
"""

import argparse
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu

_C = math.sqrt(2.0 / math.pi)
_CUBIC = 0.044715


def gelu_prime(h: jax.Array) -> jax.Array:
    """d gelu_tanh / dh in f32 (experiments.models.activations.gelu_derivative's formula)."""
    s = 1.0 / (1.0 + jnp.exp(-2.0 * _C * (h + _CUBIC * h * h * h)))
    return s + h * s * (1.0 - s) * (2.0 * _C) * (1.0 + 3.0 * _CUBIC * h * h)


def gelu_grad_matmul(a, b, h, *, tile_m=128, tile_n=128, tile_k=64, steps=3, interpret=False):
    m, k = a.shape
    n = b.shape[1]
    if m % tile_m or n % tile_n or k % tile_k:
        raise ValueError(f"({m}, {k}) @ ({k}, {n}) does not tile by {tile_m, tile_n, tile_k}")
    dtype = a.dtype
    swizzle = 128
    elems = swizzle // jnp.dtype(dtype).itemsize
    transforms = (plgpu.TilingTransform((8, elems)), plgpu.SwizzleTransform(swizzle))

    def body(a_gmem, b_gmem, h_gmem, out_gmem, h_smem, out_smem, h_ready):
        i, j = lax.axis_index("m"), lax.axis_index("n")
        rows, cols = pl.ds(i * tile_m, tile_m), pl.ds(j * tile_n, tile_n)
        plgpu.copy_gmem_to_smem(h_gmem.at[rows, cols], h_smem, h_ready)

        def product(acc):
            def step(_, a_smem, b_smem):
                plgpu.wgmma(acc, a_smem, b_smem)
                plgpu.wgmma_wait(1)

            plgpu.emit_pipeline(
                step,
                grid=(k // tile_k,),
                in_specs=[
                    plgpu.BlockSpec((tile_m, tile_k), lambda kk: (i, kk), transforms=transforms, delay_release=1),
                    plgpu.BlockSpec((tile_k, tile_n), lambda kk: (kk, j), transforms=transforms, delay_release=1),
                ],
                max_concurrent_steps=steps,
            )(a_gmem, b_gmem)
            plgpu.wgmma_wait(0)
            return acc[...]

        ab = pl.run_scoped(product, plgpu.ACC((tile_m, tile_n), jnp.float32))
        plgpu.barrier_wait(h_ready)
        out_smem[...] = (ab * gelu_prime(h_smem[...].astype(jnp.float32))).astype(dtype)
        plgpu.commit_smem()
        plgpu.copy_smem_to_gmem(out_smem, out_gmem.at[rows, cols])
        plgpu.wait_smem_to_gmem(0)

    return plgpu.kernel(
        body,
        out_type=jax.ShapeDtypeStruct((m, n), dtype),
        scratch_types=[
            plgpu.SMEM((tile_m, tile_n), dtype, transforms=transforms),
            plgpu.SMEM((tile_m, tile_n), dtype, transforms=transforms),
            plgpu.Barrier(num_barriers=1),
        ],
        grid=(m // tile_m, n // tile_n),
        grid_names=("m", "n"),
        interpret=interpret,
    )(a, b, h)


def gelu_grad_matmul_ws(
    a, b, h, *, tile_m=128, tile_n=128, tile_k=64, steps=3, wgs=2, approx=False, scale=True, interpret=False
):
    """The same product (without the gelu' factor if not ``scale``: the GEMM alone),
    warp-specialized: per CTA a (tile_m, wgs tile_n) output tile, ``wgs`` compute warpgroups (one
    tile_n slice each; each fetches its h slice by TMA before its K loop) and one warpgroup that
    only issues the pipeline's TMA loads. With wgs=1 and steps=2 a CTA needs 96 KiB of SMEM, so
    two CTAs share an SM and one's epilogue can overlap the other's MMAs."""
    m, k = a.shape
    n = b.shape[1]
    if m % tile_m or n % (wgs * tile_n) or k % tile_k:
        raise ValueError(f"({m}, {k}) @ ({k}, {n}) does not tile by {tile_m, wgs * tile_n, tile_k}")
    dtype = a.dtype
    swizzle = 128
    elems = swizzle // jnp.dtype(dtype).itemsize
    transforms = (plgpu.TilingTransform((8, elems)), plgpu.SwizzleTransform(swizzle))

    def body(a_gmem, b_gmem, h_gmem, out_gmem, h_smem, h_ready):
        i, j = lax.axis_index("m"), lax.axis_index("n")
        rows = pl.ds(i * tile_m, tile_m)

        def compute(eval_pipeline):
            wg = lax.axis_index("wg")
            cols = pl.ds(j * wgs * tile_n + wg * tile_n, tile_n)
            if scale:
                plgpu.copy_gmem_to_smem(h_gmem.at[rows, cols], h_smem.at[wg], h_ready.at[wg])

            def product(acc_ref):
                eval_pipeline(acc_ref)
                return acc_ref[...]

            ab = pl.run_scoped(product, plgpu.ACC((tile_m, tile_n), jnp.float32))
            if scale:
                plgpu.barrier_wait(h_ready.at[wg])
                ab = ab * gelu_prime(h_smem[wg].astype(jnp.float32))
            h_smem[wg] = ab.astype(dtype)
            plgpu.commit_smem()
            plgpu.copy_smem_to_gmem(h_smem.at[wg], out_gmem.at[rows, cols])
            plgpu.wait_smem_to_gmem(0)

        def step(_, a_smem, b_smem, acc_ref):
            wg = lax.axis_index("wg")
            plgpu.wgmma(acc_ref, a_smem, b_smem.at[:, pl.ds(wg * tile_n, tile_n)])
            plgpu.wgmma_wait(0)
            return acc_ref

        plgpu.emit_pipeline_warp_specialized(
            step,
            grid=(k // tile_k,),
            in_specs=[
                plgpu.BlockSpec((tile_m, tile_k), lambda kk: (0, kk), transforms=transforms),
                plgpu.BlockSpec((tile_k, wgs * tile_n), lambda kk: (kk, 0), transforms=transforms),
            ],
            max_concurrent_steps=steps,
            num_compute_wgs=wgs,
            memory_registers=40,
            wg_axis="wg",
            compute_context=compute,
        )(a_gmem.at[rows, :], b_gmem.at[:, pl.ds(j * wgs * tile_n, wgs * tile_n)])

    return plgpu.kernel(
        body,
        out_type=jax.ShapeDtypeStruct((m, n), dtype),
        scratch_types=[
            plgpu.SMEM((wgs, tile_m, tile_n), dtype, transforms=transforms),
            plgpu.Barrier(num_barriers=wgs),
        ],
        grid=(m // tile_m, n // (wgs * tile_n)),
        grid_names=("m", "n"),
        num_threads=wgs + 1,
        thread_name="wg",
        compiler_params=plgpu.CompilerParams(approx_math=True) if approx else None,
        interpret=interpret,
    )(a, b, h)


def reference(a, b, h):
    return ((a @ b).astype(jnp.float32) * gelu_prime(h.astype(jnp.float32))).astype(a.dtype)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--interpret", action="store_true")
    p.add_argument("--m", type=int, default=50688)
    p.add_argument("--k", type=int, default=768)
    p.add_argument("--n", type=int, default=3072)
    p.add_argument("--configs", default="128,128,64,3")
    args = p.parse_args()
    keys = jax.random.split(jax.random.key(0), 9)
    sets = [
        (
            jax.random.normal(keys[3 * s], (args.m, args.k), jnp.bfloat16),
            (jax.random.normal(keys[3 * s + 1], (args.k, args.n)) / args.k**0.5).astype(jnp.bfloat16),
            (2 * jax.random.normal(keys[3 * s + 2], (args.m, args.n))).astype(jnp.bfloat16),
        )
        for s in range(3)
    ]
    want = np.asarray(jax.jit(reference)(*sets[0]), np.float32)
    if args.interpret:
        from jax._src.pallas.mosaic_gpu.interpret.params import InterpretGPUParams

        forms = {
            "pipelined": gelu_grad_matmul,
            "warp-specialized, 2 compute warpgroups": gelu_grad_matmul_ws,
            "warp-specialized, 1 compute warpgroup": lambda *a, **kw: gelu_grad_matmul_ws(*a, wgs=1, steps=2, **kw),
        }
        for name, fn in forms.items():
            got = np.asarray(fn(*sets[0], interpret=InterpretGPUParams()), np.float32)
            print(name, "interpret: max abs err", float(np.max(np.abs(got - want))), "max", float(np.max(np.abs(want))))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench.timing import TimingSettings, time_calls

    settings = TimingSettings(warmup=3, repeats=20, input_sets=3, window=10)

    def bench(name, fn):
        f = jax.jit(fn)
        t = time_calls(lambda i: f(*sets[i % 3]), sync=jax.block_until_ready, settings=settings)
        print(f"{name:50s} {t.median_s * 1e3:7.4f} ms ({t.p10_s * 1e3:.4f}-{t.p90_s * 1e3:.4f})", flush=True)

    bench("xla: a @ b", lambda a, b, h: a @ b)
    bench("xla: (a @ b) * gelu'(h) (two kernels)", reference)
    for spec in args.configs.split(";"):
        kind, *sizes = spec.split(",")
        tm, tn, tk, st, *rest = map(int, sizes)
        wgs = rest[0] if rest else 2
        if kind == "plain":
            fn = lambda a, b, h, tm=tm, tn=tn, tk=tk, st=st: gelu_grad_matmul(a, b, h, tile_m=tm, tile_n=tn, tile_k=tk, steps=st)
        else:
            fn = lambda a, b, h, tm=tm, tn=tn, tk=tk, st=st, w=wgs, ax=kind == "wsapprox", sc=kind != "wsgemm": gelu_grad_matmul_ws(
                a, b, h, tile_m=tm, tile_n=tn, tile_k=tk, steps=st, wgs=w, approx=ax, scale=sc)
        try:
            got = np.asarray(jax.jit(fn)(*sets[0]), np.float32)
            ref = want if kind != "wsgemm" else np.asarray(sets[0][0] @ sets[0][1], np.float32)
            err = float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))
            bench(f"mgpu {spec} (rel err {err:.1e})", fn)
        except Exception as e:  # noqa: BLE001
            print(f"mgpu {spec}: {type(e).__name__}: {str(e)[:600]}", flush=True)


if __name__ == "__main__":
    main()
