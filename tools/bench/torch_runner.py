#!/usr/bin/python3
"""Runs the PyTorch baseline script for the benchmarks and adds what it does not measure.

    torch_runner.py SCRIPT [--seconds S] [--count-allocs] 'ARGS' ['ARGS' ...]

Each ARGS is one run's command line for SCRIPT (e.g. '--batch 256 --width 128 --threads 1').
The script runs in this process (runpy), so torch is imported once for all the runs. For each
run one JSON line is printed: the script's own line plus
  peak_rss_kb   VmHWM of this process so far (the script's peak when it is the only run);
                /proc's VmHWM, not getrusage: ru_maxrss of an exec'd child also counts the
                parent's memory at fork time
and with --seconds S, the script's --steps is chosen so training takes about S seconds
(calibrated by short runs), and with --count-allocs (needs LD_PRELOAD of libbench_alloc_count.so)
  allocs_per_step, allocs_per_ddim_step   heap allocations per training and per DDIM step,
                the differences between short runs that differ only in --steps or --ddim-steps,
                so start-up and one-off allocations cancel.
"""
import argparse, ctypes, io, json, math, runpy, shlex, sys
from contextlib import redirect_stdout


def run_script(script, args):
    """Runs SCRIPT with ARGS; returns its JSON line as a dict."""
    out = io.StringIO()
    sys.argv = [script] + args
    with redirect_stdout(out):
        runpy.run_path(script, run_name="__main__")
    lines = [l for l in out.getvalue().splitlines() if l.startswith("{")]
    if not lines:
        sys.exit(f"torch_runner: {script} {' '.join(args)} printed no JSON line:\n{out.getvalue()}")
    return json.loads(lines[-1])


def with_option(args, flag, value):
    """ARGS with FLAG set to VALUE (replaced if present)."""
    args = list(args)
    if flag in args:
        args[args.index(flag) + 1] = str(value)
    else:
        args += [flag, str(value)]
    return args


def calibrated_steps(script, args, seconds):
    """Steps for about SECONDS of training: double short runs until one takes >= 0.2 s."""
    steps = 2
    while True:
        r = run_script(script, with_option(args, "--steps", steps))
        if r["train_s"] >= 0.2 or steps >= 1 << 16:
            return max(5, math.ceil(seconds * steps / r["train_s"]))
        steps *= 4


def peak_rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def allocs_per_step(script, args, counter):
    """Heap allocations per training step and per DDIM step (differences of short runs)."""
    def count(steps, ddim_steps):
        before = counter()
        run_script(script, with_option(with_option(args, "--steps", steps), "--ddim-steps", ddim_steps))
        return counter() - before
    base = count(20, 10)
    return (count(120, 10) - base) / 100, (count(20, 30) - base) / 20


def main():
    p = argparse.ArgumentParser()
    p.add_argument("script")
    p.add_argument("runs", nargs="+", help="one run's arguments for SCRIPT, as one string")
    p.add_argument("--seconds", type=float, help="choose --steps for about this training time")
    p.add_argument("--count-allocs", action="store_true")
    a = p.parse_args()
    counter = None
    if a.count_allocs:
        try:
            counter = ctypes.CDLL(None).bench_alloc_count
            counter.restype = ctypes.c_ulonglong
        except AttributeError:
            sys.exit("torch_runner: --count-allocs needs LD_PRELOAD=.../libbench_alloc_count.so")
    for run in a.runs:
        args = shlex.split(run)
        if a.seconds:
            args = with_option(args, "--steps", calibrated_steps(a.script, args, a.seconds))
        r = run_script(a.script, args)
        r["peak_rss_kb"] = peak_rss_kb()
        if counter:
            r["allocs_per_step"], r["allocs_per_ddim_step"] = allocs_per_step(a.script, args, counter)
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
