"""The cold-start protocol on S3-Rec Beauty with its attribute file: items withheld from training, scored
from their features, against baselines that can score new items, and the warm targets against an ID-only
model trained on everything.

Two arms per seed, on the same seeded 10% of the catalogue (``data.cold_items 0.1``, ``data.seed``):
``features``: the item encoder on both sides (``model.feature_sides both``, ``--id-dropout``), the withheld
items' interactions out of training; ``ids``: the shipped config, the same items reported apart but trained
on (``data.withhold_cold false``), the reference for warm targets and for the same cold targets trained
with their IDs. Test split, full ranking, best validation checkpoint, a training budget per run.

    SEQREC_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python -m benchmarks.cold_start --arms features --seeds 42 --name cold_start_features_42
    SEQREC_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python -m benchmarks.cold_start --arms ids --seeds 42 --name cold_start_ids_42
    python -m benchmarks.cold_start --merge cold_start_features_42 cold_start_ids_42 --name cold_start
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.accuracy import run_one
from benchmarks.common import RESULTS, mean_sd, write

CONFIG = "sasrec_beauty_s3"
ATTRIBUTES = "$SEQREC_DATA_DIR/amazon-beauty-s3rec/Beauty_item2attributes.json"
ARMS = {
    "features": [f"--data.item_features={ATTRIBUTES}", "--data.cold_items=0.1", "--model.feature_sides=both",
                 "--model.id_dropout=0.5"],
    "ids": ["--data.cold_items=0.1", "--data.withhold_cold=false"],
    # The ID-only model under the same withholding: the same training data as the features arm; the withheld
    # items' IDs are never trained, so it can place them nowhere.
    "ids_withheld": ["--data.cold_items=0.1"],
}
SHOWN = [("ndcg@10", "model"), ("popularity/", "popularity"), ("feature_popularity/", "attribute popularity"),
         ("feature_knn/", "feature kNN of recent items")]


def arm_name(row: dict) -> str:
    """The arm of a stored run, from the overrides it ran with (those beyond the arm's own are named too)."""
    overrides = row["overrides"]
    dropout = [o.split("=", 1)[1] for o in overrides if o.startswith("--model.id_dropout=")]
    if dropout:
        name = f"features, ID dropout {dropout[0]}"
        own = ARMS["features"]
    else:
        withheld = "--data.withhold_cold=false" not in overrides
        name, own = ("ids, same items withheld", ARMS["ids_withheld"]) if withheld else ("ids", ARMS["ids"])
    extra = [o.lstrip("-") for o in overrides if o not in own and not o.startswith("--model.id_dropout=")]
    return ", ".join([name, *extra])


def attach_margins(row: dict, folder: str | None = None) -> dict:
    """The test report's paired margins on cold targets (model minus each new-item baseline, bootstrap
    interval over users), from the run's ``test_results.json``."""
    path = Path(folder or row["run_folder"]) / "test_results.json"
    if path.exists():
        cold = json.loads(path.read_text()).get("cold_start")
        if cold:
            row["cold_margins"] = cold
    return row


def table(rows: list[dict]) -> str:
    lines = ["# Cold start on S3-Rec Beauty (leave-one-out, test split, full ranking; 10% of the items withheld)", "",
             "Cold: test targets among the withheld items (never in any training sequence; still in the histories "
             "evaluated). Warm: the other targets. `features` scores every item from its ID embedding and its "
             "attributes (the ID dropout of the arm), the withheld items from attributes alone; `ids` is the shipped "
             "ID-only config trained on everything, the same targets reported apart. Several seeds: mean ± sd.", "",
             "| arm | scorer | seeds | epochs | all NDCG@10 | warm NDCG@10 | cold NDCG@10 | cold HR@10 |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    by_arm: dict[str, list[dict]] = {}
    for r in rows:
        by_arm.setdefault(arm_name(r), []).append(r)
    for arm, runs in by_arm.items():
        for prefix, scorer in SHOWN:
            p = "" if scorer == "model" else prefix
            if f"{p}cold/ndcg@10" not in runs[0]["test"]:
                continue
            def agg(key: str) -> str:
                return mean_sd([r["test"][key] for r in runs if key in r["test"]])
            lines.append(f"| {arm} | {scorer} | {','.join(str(r['seed']) for r in runs)} | "
                         f"{','.join(str(r['epochs']) for r in runs)} | {agg(p + 'ndcg@10')} | "
                         f"{agg(p + 'warm/ndcg@10')} | {agg(p + 'cold/ndcg@10')} | {agg(p + 'cold/hr@10')} |")
    chosen = [a for a in by_arm if a.startswith("features")]
    if chosen and "ids" in by_arm:
        # The features arm to compare: the best validation NDCG@10 (test not used for the choice), over the
        # seeds every feature arm ran, so that the arms differ only in the recipe.
        common = sorted(set.intersection(*({r["seed"] for r in by_arm[a]} for a in chosen)))
        def val(a: str) -> float:
            runs = [r for r in by_arm[a] if r["seed"] in common]
            return sum(r["val"]["ndcg@10"] for r in runs) / len(runs)
        best = max(chosen, key=val)
        f, i = by_arm[best], by_arm["ids"]
        lines += ["", f"Compared: {best} (the best validation NDCG@10 of the feature arms on seeds "
                  f"{', '.join(map(str, common))}: " + ", ".join(f"{a} {val(a):.4f}" for a in chosen)
                  + f"), on all its seeds ({', '.join(str(r['seed']) for r in f)}) against the ids arm's "
                  f"({', '.join(str(r['seed']) for r in i)})."]
        def mean(runs: list[dict], key: str) -> float:
            return sum(r["test"][key] for r in runs) / len(runs)
        warm = mean(f, "warm/ndcg@10") / mean(i, "warm/ndcg@10")
        cold = mean(f, "cold/ndcg@10") / max(mean(f, "feature_knn/cold/ndcg@10"),
                                             mean(f, "feature_popularity/cold/ndcg@10"))
        lines += ["", f"Warm targets: features / ids = **{warm:.3f}** of the ID-only model's NDCG@10. Cold targets: "
                  f"the feature model's NDCG@10 is **{cold:.2f}x** the better new-item baseline; the ID-only model "
                  f"trained with those items' IDs gets {mean(i, 'cold/ndcg@10'):.4f}."]
        same = by_arm.get("ids, same items withheld")
        if same:
            lines += ["", f"On the same training data (the ID-only model with the same items withheld, seeds "
                      f"{', '.join(str(r['seed']) for r in same)}): features / ids = "
                      f"**{mean(f, 'warm/ndcg@10') / mean(same, 'warm/ndcg@10'):.3f}** on warm targets; its cold "
                      f"NDCG@10 is {mean(same, 'cold/ndcg@10'):.4f}."]
        knn = [r["cold_margins"]["margins"]["feature_knn/ndcg@10"] for r in f
               if "feature_knn/ndcg@10" in r.get("cold_margins", {}).get("margins", {})]
        if knn:
            above = sum(m["difference"]["low"] > 0 for m in knn)
            lines += ["", f"Over feature kNN (the stronger baseline here), the 95% interval of the cold-target "
                      f"difference lies above 0 in **{above} of {len(knn)}** runs of {best} (mean difference "
                      f"{sum(m['difference']['mean'] for m in knn) / len(knn):+.4f})."]
    margins = [r for r in rows if r.get("cold_margins", {}).get("margins")]
    if margins:
        lines += ["", "Cold targets, per run: the model's NDCG@10 minus each new-item baseline's on the same users "
                  "(95% bootstrap interval over users, sign-flip p-value; `seqrec evaluate` prints the same from the "
                  "run folder):", "",
                  "| arm | seed | cold users | baseline | model | baseline NDCG@10 | difference | 95% interval | ratio | p |",
                  "|---|---|---:|---|---:|---:|---:|---|---:|---:|"]
        for r in margins:
            for name, m in r["cold_margins"]["margins"].items():
                if not name.endswith("ndcg@10"):
                    continue
                d = m["difference"]
                p = "< 0.001" if m["p_value"] < 0.001 else f"{m['p_value']:.3f}"
                lines.append(f"| {arm_name(r)} | {r['seed']} | {r['cold_margins']['users']} | {name.split('/')[0]} | "
                             f"{m['model']:.4f} | {m['baseline']:.4f} | {d['mean']:+.4f} | [{d['low']:+.4f}, "
                             f"{d['high']:+.4f}] | {m['ratio']:.2f} | {p} |".replace("| inf |", "| – |"))
    lines += ["", "Commands:", ""] + [f"    {r['command']}" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[42])
    p.add_argument("--minutes", type=float, default=12.0, help="training budget per run")
    p.add_argument("--id-dropout", type=float, default=0.5, help="model.id_dropout of the features arm")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra overrides for every run (e.g. model.unknown_id=learned), recorded in each row")
    p.add_argument("--merge", nargs="+", default=None, metavar="NAME", help="result files to merge into one table")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="cold_start")
    args = p.parse_args(argv)
    if args.merge:
        rows = [r for name in args.merge for r in json.loads((args.out / f"{name}.json").read_text())["rows"]]
    else:
        rows = []
        for seed in args.seeds:
            for arm in args.arms:
                overrides = [o.replace("id_dropout=0.5", f"id_dropout={args.id_dropout:g}") for o in ARMS[arm]]
                overrides += [f"--{kv}" for kv in args.set]
                folder = (f"cold_start_{arm}" + (f"_d{args.id_dropout:g}" if arm == "features" else "")
                          + "".join(f"_{kv.rsplit('.', 1)[-1]}" for kv in args.set) + f"_seed{seed}")
                r = run_one(CONFIG, args.minutes, seed, args.out, overrides, folder=folder)
                if r is None:
                    continue
                attach_margins(r)
                r["command"] = (f"SEQREC_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python -m benchmarks.cold_start "
                                f"--arms {arm} --seeds {seed} --minutes {args.minutes:g} --name {args.name}"
                                + (f" --id-dropout {args.id_dropout:g}" if arm == "features" else "")
                                + (f" --set {' '.join(args.set)}" if args.set else ""))
                rows.append(r)
    write(args.name, {"rows": rows}, table(rows), args.out)
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
