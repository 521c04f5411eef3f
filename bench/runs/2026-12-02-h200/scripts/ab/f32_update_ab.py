"""bench.jax_suite with GLoRA's update in f32 (build_method's compute_dtype ignored) when $GLORA_F32=1."""
import os, sys
import bench.jax_train as jt
if os.environ.get("GLORA_F32") == "1":
    orig = jt.build_method
    jt.build_method = lambda *a, compute_dtype=None, **k: orig(*a, **k)
    print("GLoRA update in f32", flush=True)
if __name__ == "__main__":
    from bench import jax_suite
    sys.exit(jax_suite.main(sys.argv[1:]))
