"""A/B record (not project code): every cuDNN conv's autotuning in XLA dumps, side by side.

Each argument is LOGS:RESULTS, the files of --xla_gpu_dump_autotune_logs_to and
--xla_gpu_dump_autotune_results_to (plain or .gz). For every conv custom call (keyed by its
target, output shape, window and op_name, so runs of different models line up) it prints the
picked config, the picked config's measured time and the best time measured, per run.

    python autotune_picks.py logs-1.txt:results-1.txt logs-2.txt.gz:results-2.txt.gz
"""

import gzip
import re
import sys

TOKEN = re.compile(r'\s*(?:([A-Za-z_][\w]*)\s*(:)?\s*(\{)|([A-Za-z_][\w]*)\s*:\s*("(?:[^"\\]|\\.)*"|[^\s{}]+)|(\}))')


def read(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return f.read()


def parse(text):
    """Text-format protobuf -> nested dict of lists (every field a list)."""
    stack = [{}]
    pos = 0
    while True:
        m = TOKEN.match(text, pos)
        if not m:
            if text[pos:].strip():
                raise ValueError(f"cannot parse at {pos}: {text[pos:pos+80]!r}")
            break
        pos = m.end()
        if m.group(3):
            node = {}
            stack[-1].setdefault(m.group(1), []).append(node)
            stack.append(node)
        elif m.group(6):
            stack.pop()
        else:
            value = m.group(5)
            if value.startswith('"'):
                value = bytes(value[1:-1], "utf-8").decode("unicode_escape")
            stack[-1].setdefault(m.group(4), []).append(value)
    return stack[0]


def short(config):
    """One line for a config: backend and the cuDNN algorithm (id, knobs, workspace)."""
    backend = config.get("backend", ["?"])[0]
    algo = config.get("backend_config", [{}])[0].get("algorithm")
    if not algo:
        return backend
    a = algo[0]
    knobs = ",".join(f"{k['key'][0]}={k['value'][0]}" for k in a.get("tuning_knobs", []))
    ws = a.get("workspace_size", [{}])[0].get("value", ["0"])[0]
    return f"{backend} algo {a.get('algo_id', ['0'])[0]} [{knobs}] ws {ws}"


def conv_key(hlo_text):
    m = re.search(r"= \(([^,]+\[[^\]]*\])", hlo_text)
    window = re.search(r"window=\{([^}]*)\}", hlo_text)
    target = re.search(r'custom_call_target=\\?"([^"\\]+)', hlo_text)
    op = re.search(r'op_name=\\?"([^"\\]+)', hlo_text)
    return (
        target.group(1) if target else "?",
        m.group(1) if m else "?",
        window.group(1) if window else "",
        op.group(1).replace("jit(packed_step)/", "") if op else "?",
    )


def run_picks(logs_path, results_path):
    logs = parse(read(logs_path))
    results = parse(read(results_path))
    optimal = {
        e["key"][0]["target"][0]["hlo_fingerprint"][0]: short(e["value"][0]["optimal_config"][0])
        for e in results.get("entries", [])
    }
    picks = {}
    for p in logs.get("instruction_profiles", []):
        text = p.get("hlo_text", [""])[0]
        if "cudnn" not in text:
            continue
        times = {}
        for cp in p.get("config_profiles", []):
            nanos = cp.get("run_time", [{}])[0].get("nanos", [None])[0]
            if nanos is not None:
                times.setdefault(short(cp["config"][0]), int(nanos))
        pick = optimal.get(p["hlo_fingerprint"][0], "?")
        picks[conv_key(text)] = (pick, times.get(pick), min(times.values()) if times else None, len(times))
    return picks


def main(args):
    runs = [run_picks(*a.split(":")) for a in args]
    for key in sorted(set().union(*runs), key=lambda k: (k[3], k[0])):
        print(" | ".join(key))
        for i, run in enumerate(runs, 1):
            if key not in run:
                print(f"   run {i}: (not autotuned)")
                continue
            pick, t, best, n = run[key]
            fmt = lambda v: "?" if v is None else f"{v / 1e6:.3f} ms"
            print(f"   run {i}: {pick}: {fmt(t)} (best of {n}: {fmt(best)})")


if __name__ == "__main__":
    main(sys.argv[1:])
