"""A/B record (not project code): the stalled measurements in XLA autotuning log dumps.

A candidate whose one timed run took longer than the delay kernel's ~100 ms timeout was timed
with the host's enqueue time in it. For each dump (--xla_gpu_dump_autotune_logs_to, plain or
.gz) this prints the number of profiled candidates, how many measured over ``LIMIT_MS``, and
each such instruction (its position in the dump, output shape, op_name, the stalled times).

    python autotune_stalls.py logs-1.txt logs-2.txt.gz
"""

import sys

from autotune_picks import conv_key, parse, read

LIMIT_MS = 100.0


def main(paths):
    for path in paths:
        profiles = parse(read(path)).get("instruction_profiles", [])
        n, n_over, stalled = 0, 0, []
        for i, p in enumerate(profiles):
            times = [
                int(cp.get("run_time", [{}])[0].get("nanos", ["0"])[0]) / 1e6
                for cp in p.get("config_profiles", [])
            ]
            n += len(times)
            over = [round(t, 1) for t in times if t > LIMIT_MS]
            n_over += len(over)
            if over:
                _, shape, _, op = conv_key(p.get("hlo_text", [""])[0])
                stalled.append(f"  #{i} {shape} {op[-60:]}: {over} of {len(times)}")
        print(f"{path}: {len(profiles)} instructions, {n} candidates, "
              f"{n_over} over {LIMIT_MS:.0f} ms")
        print("\n".join(stalled))


if __name__ == "__main__":
    main(sys.argv[1:])
