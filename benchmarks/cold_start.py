"""The cold-start protocol on S3-Rec Beauty with its attribute file: items withheld from training, scored
from their features, against baselines that can score new items, and the warm targets against an ID-only
model trained on everything.

Each run of the features arm then reads the warm/cold trade-off of ``model.new_item_boost`` off validation
(``seqrec.evaluate.boost``: the largest boost that keeps validation warm NDCG@10 within 2% of the unboosted
model's) and tests its best checkpoint once more with that boost; the table shows both.

Arms per seed, on the same seeded 10% of the catalogue (``data.cold_items 0.1``, ``data.seed``):
``features``: the item encoder on both sides (``model.feature_sides both``, ``--id-dropout``), the withheld
items' interactions out of training; ``ids``: the shipped config, the same items reported apart but trained
on (``data.withhold_cold false``), the reference for warm targets and for the same cold targets trained
with their IDs. Test split, full ranking, best validation checkpoint, a training budget per run.

    SEQREC_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python -m benchmarks.cold_start --arms features --seeds 42 --name cold_start_features_42
    SEQREC_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python -m benchmarks.cold_start --arms ids --seeds 42 --name cold_start_ids_42
    python -m benchmarks.cold_start --merge cold_start_features_42 cold_start_ids_42 --name cold_start
    python -m benchmarks.cold_start --boost cold_start_features_42   # the boost for runs stored before it
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.accuracy import run_one
from benchmarks.common import RESULTS, mean_sd, write

TOLERANCE = 0.02  # the boost may cost this share of the unboosted model's validation warm NDCG@10

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


def attach_boost(row: dict, tolerance: float = TOLERANCE) -> dict:
    """For a features run: the validation curve of ``model.new_item_boost``, the boost it chooses, and the
    test of the run's best checkpoint at that boost (in ``<run folder>/boosted``)."""
    from seqrec.cli import run
    from seqrec.evaluate.boost import boost_curve, choose_boost

    folder = Path(row["run_folder"])
    config = str(next(folder.glob("logs/version_*/config.yaml")))
    common = ["--config", config, "--ckpt_path", str(folder / "best.ckpt"), "--trainer.logger=false",
              "--trainer.enable_progress_bar=false"]
    cli = run(["validate", *common, f"--trainer.default_root_dir={folder / 'boost_validation'}"])
    curve = boost_curve(cli.model, cli.datamodule.val_dataloader())
    chosen = choose_boost(curve, tolerance)
    out = folder / "boosted"
    cli = run(["test", *common, f"--model.new_item_boost={chosen}", f"--trainer.default_root_dir={out}"])
    row["boost"] = attach_margins({"curve": curve, "chosen": chosen, "tolerance": tolerance,
                                   "test": cli.model.results.get("test", {})}, str(out))
    return row


def _boosted_view(row: dict) -> dict | None:
    """A features run as tested with its chosen boost: the same row with the boosted test and margins."""
    boost = row.get("boost")
    if not boost:
        return None
    view = {**row, "test": boost["test"]}
    view.pop("cold_margins", None)
    if "cold_margins" in boost:
        view["cold_margins"] = boost["cold_margins"]
    return view


def table(rows: list[dict]) -> str:
    lines = ["# Cold start on S3-Rec Beauty (leave-one-out, test split, full ranking; 10% of the items withheld)", "",
             "Cold: test targets among the withheld items (never in any training sequence; still in the histories "
             "evaluated). Warm: the other targets. `features` scores every item from its ID embedding and its "
             "attributes (the ID dropout of the arm), the withheld items from attributes alone; `ids` is the shipped "
             "ID-only config trained on everything, the same targets reported apart; `ids, same items withheld` the "
             "same config on the features arm's training data. `model, new-item boost` is the same checkpoint "
             "with `model.new_item_boost` added to the withheld items' scores, the boost read off validation (the "
             "largest that keeps validation warm NDCG@10 within "
             f"{100 * TOLERANCE:g}% of the unboosted model's). Several seeds: mean ± sd.", "",
             "| arm | scorer | seeds | epochs | all NDCG@10 | warm NDCG@10 | cold NDCG@10 | cold HR@10 |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    by_arm: dict[str, list[dict]] = {}
    for r in rows:
        by_arm.setdefault(arm_name(r), []).append(r)
    for arm, runs in by_arm.items():
        boosted = [v for r in runs if (v := _boosted_view(r)) is not None]
        shown = [*SHOWN[:1], *([("ndcg@10", "model, new-item boost")] if boosted else []), *SHOWN[1:]]
        for prefix, scorer in shown:
            p = "" if scorer.startswith("model") else prefix
            use = boosted if scorer == "model, new-item boost" else runs
            if f"{p}cold/ndcg@10" not in use[0]["test"]:
                continue
            def agg(key: str) -> str:
                return mean_sd([r["test"][key] for r in use if key in r["test"]])
            if use is boosted:
                scorer += " " + ", ".join(f"{r['boost']['chosen']:g}" for r in boosted)
            lines.append(f"| {arm} | {scorer} | {','.join(str(r['seed']) for r in use)} | "
                         f"{','.join(str(r['epochs']) for r in use)} | {agg(p + 'ndcg@10')} | "
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
        same = by_arm.get("ids, same items withheld")
        lines += ["", f"Compared: {best} (the best validation NDCG@10 of the feature arms on seeds "
                  f"{', '.join(map(str, common))}: " + ", ".join(f"{a} {val(a):.4f}" for a in chosen)
                  + f"), on all its seeds ({', '.join(str(r['seed']) for r in f)}), against the ids arm's "
                  f"({', '.join(str(r['seed']) for r in i)})"
                  + (f" and the same-data ID-only arm's ({', '.join(str(r['seed']) for r in same)})." if same else ".")]
        def mean(runs: list[dict], key: str) -> float:
            return sum(r["test"][key] for r in runs) / len(runs)
        variants = [("unboosted", f)]
        if all(_boosted_view(r) for r in f):
            variants.append(("with the new-item boost", [_boosted_view(r) for r in f]))
        lines += ["", "| scorer | warm / ids (trained on every item) | warm / ids (same items withheld) | cold NDCG@10 "
                  "| cold / better new-item baseline | runs whose 95% interval over feature kNN lies above 0 |",
                  "|---|---:|---:|---:|---:|---|"]
        for label, runs in variants:
            warm = mean(runs, "warm/ndcg@10")
            cold = mean(runs, "cold/ndcg@10") / max(mean(runs, "feature_knn/cold/ndcg@10"),
                                                    mean(runs, "feature_popularity/cold/ndcg@10"))
            knn = [r["cold_margins"]["margins"]["feature_knn/ndcg@10"] for r in runs
                   if "feature_knn/ndcg@10" in r.get("cold_margins", {}).get("margins", {})]
            above = (f"{sum(m['difference']['low'] > 0 for m in knn)} of {len(knn)} (mean difference "
                     f"{sum(m['difference']['mean'] for m in knn) / len(knn):+.4f})") if knn else "–"
            lines.append(f"| {best}, {label} | {warm / mean(i, 'warm/ndcg@10'):.3f} | "
                         + (f"{warm / mean(same, 'warm/ndcg@10'):.3f}" if same else "–")
                         + f" | {mean(runs, 'cold/ndcg@10'):.4f} | {cold:.2f}x | {above} |")
        lines += ["", f"The ID-only model trained with the withheld items' IDs gets {mean(i, 'cold/ndcg@10'):.4f} on "
                  "the same cold targets" + (f"; under the same withholding, {mean(same, 'cold/ndcg@10'):.4f}."
                                             if same else ".")]
    curves = [r for r in rows if r.get("boost")]
    if curves:
        lines += ["", "The boost's trade-off on validation (NDCG@10 of warm / cold targets; the chosen boost in bold):", "",
                  "| arm | seed | " + " | ".join(f"{p['boost']:g}" for p in curves[0]["boost"]["curve"]) + " |",
                  "|---|---|" + "---|" * len(curves[0]["boost"]["curve"])]
        for r in curves:
            cells = []
            for p in r["boost"]["curve"]:
                cell = f"{p['warm']:.4f} / {p['cold']:.4f}"
                cells.append(f"**{cell}**" if p["boost"] == r["boost"]["chosen"] else cell)
            lines.append(f"| {arm_name(r)} | {r['seed']} | " + " | ".join(cells) + " |")
    margins = [(arm_name(r), r) for r in rows if r.get("cold_margins", {}).get("margins")]
    margins += [(arm_name(r) + ", new-item boost", v) for r in rows
                if (v := _boosted_view(r)) is not None and v.get("cold_margins", {}).get("margins")]
    if margins:
        lines += ["", "Cold targets, per run: the model's NDCG@10 minus each new-item baseline's on the same users "
                  "(95% bootstrap interval over users, sign-flip p-value; `seqrec evaluate` prints the same from the "
                  "run folder):", "",
                  "| arm | seed | cold users | baseline | model | baseline NDCG@10 | difference | 95% interval | ratio | p |",
                  "|---|---|---:|---|---:|---:|---:|---|---:|---:|"]
        for name, r in margins:
            for metric, m in r["cold_margins"]["margins"].items():
                if not metric.endswith("ndcg@10"):
                    continue
                d = m["difference"]
                p = "< 0.001" if m["p_value"] < 0.001 else f"{m['p_value']:.3f}"
                lines.append(f"| {name} | {r['seed']} | {r['cold_margins']['users']} | {metric.split('/')[0]} | "
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
    p.add_argument("--boost", nargs="+", default=None, metavar="NAME",
                   help="train nothing: add the new-item boost (validation curve, boosted test) to the features "
                        "runs of these stored result files, in place")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="cold_start")
    args = p.parse_args(argv)
    if args.boost:
        for name in args.boost:
            rows = json.loads((args.out / f"{name}.json").read_text())["rows"]
            rows = [attach_boost(r) if r["overrides"][0] == ARMS["features"][0] else r for r in rows]
            write(name, {"rows": rows}, table(rows), args.out)
        return rows
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
                if arm == "features":
                    attach_boost(r)
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
