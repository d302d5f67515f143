"""Does ``compile: True`` pay on CPU? The user's LoRA config end to end, compiled and not, at 20 and 200 steps.

The ``lora-mha-tio`` row of ``user_config_cpu.py`` (torchtune v0.6.1's ``llama2/7B_lora_single_device``,
unchanged but for the tiny-model overrides) runs through ``tune run`` for each step count, in one
invocation, the order rotating between repeats, three ways: ``compile=False``; ``compile=True`` as
the product runs it (on CPU the recipes skip compiling: ``training.compile_enabled``); and
``compile=True`` forced with ``TUNE_COMPILE_ON_CPU=1``, which compiles the layers and the loss.
Reported per run: the end-to-end wall time of the ``tune run`` process (start-up, compilation,
training and the final save), the first step's time (where compilation happens), and the steady
tokens/s over the steps after the first 5. Every run gets an empty ``TORCHINDUCTOR_CACHE_DIR`` of its
own, so each compiled run pays the cold compile a user's first run pays; a later run of the same
config on the same machine reuses inductor's on-disk cache and compiles faster.

Usage:
    python benchmarks/compile_cpu.py                       # 20 and 200 steps, 1 repeat of each arm
    python benchmarks/compile_cpu.py --steps 20 --repeats 3
"""

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import lora_cpu_assets as assets  # noqa: E402
import report  # noqa: E402
import user_config_cpu as ucc  # noqa: E402

# arm -> (config's compile, extra environment)
ARMS = {"compile=False": (False, {}), "compile=True": (True, {}),
        "compile=True, TUNE_COMPILE_ON_CPU=1": (True, {"TUNE_COMPILE_ON_CPU": "1"})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="20,200")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/compile_cpu_work"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    started = report.start()
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    ucc.make_assets(work)
    steps_list = [int(s) for s in args.steps.split(",")]
    # 4 samples a step: enough records for the longest run in one epoch (the first 400 are ucc's).
    data = work / f"data_{4 * max(steps_list)}.json"
    if not data.exists():
        assets.write_dataset(data, num_records=max(400, 4 * max(steps_list)))
    rows = []
    for steps in steps_list:
        runs = {arm: [] for arm in ARMS}
        for rep in range(args.repeats):
            names = list(ARMS)
            for arm in names[rep % 3:] + names[: rep % 3]:
                compile, env = ARMS[arm]
                run_dir = work / "runs" / f"s{steps}_arm{names.index(arm)}_r{rep}"
                shutil.rmtree(run_dir, ignore_errors=True)  # no logs or compile cache of an earlier invocation
                run_dir.mkdir(parents=True)
                env = dict(env, TORCHINDUCTOR_CACHE_DIR=str(run_dir / "inductor_cache"))  # cold compile
                overrides = ucc.overrides("lora", 8, True, "fp32", work, run_dir / "out", steps)
                overrides = [o if not o.startswith("dataset.data_files=") else f"dataset.data_files={data}"
                             for o in overrides] + [f"compile={compile}"]
                batches = ucc.recipe_batches(ucc.load_config("lora", overrides), steps)
                tokens = [int((b["labels"][:, 1:] != -100).sum()) for b in batches]
                result = ucc.run_ours(run_dir, "lora", overrides, tokens, env)
                times = result["step_times"]
                runs[arm].append({"wall": result["wall_s"], "first": times[0],
                                  "steady": sum(tokens[5:]) / sum(times[5:]), "loss": result["losses"][-1]})
                print(f"[{steps} steps, {arm}, rep {rep}] {json.dumps(runs[arm][-1])}", flush=True)
        for arm in runs:
            r = runs[arm]
            rows.append(f"| {steps} | {arm} | {statistics.median(x['wall'] for x in r):.0f} "
                        f"| {statistics.median(x['first'] for x in r):.1f} | {statistics.median(x['steady'] for x in r):.0f} "
                        f"| {r[0]['loss']:.4f} |")
    table = "\n".join(["| steps | run | end-to-end s | first step s | steady tok/s (steps 6..N) | final loss |",
                       "|---:|---|---:|---:|---:|---:|", *rows])
    report.write_report(args.out or report.default_path(__file__), "compile: True on CPU, end to end (compile_cpu.py)",
                        table, started, [f"median of {args.repeats} repeat(s); the user's unchanged LoRA config "
                                         "(lora-mha-tio row of user_config_cpu.py); every run with an empty "
                                         "inductor cache (cold compile)."])


if __name__ == "__main__":
    main()
