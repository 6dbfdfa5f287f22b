"""`attack all`: every attack on one model and one labelled folder, within a time budget, into one folder
with README.md (headline table, then each attack's write-up) and summary.json (the numbers the model card
may show). ``quick`` runs small counts everywhere (seconds on the toy model: for the tests)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from huskyai.inference.predictor import Predictor
from huskyai.redteam import report, runs
from huskyai.settings import DEFAULT_RATE_LIMIT

ROUND_ONE = ("junk", "perturb", "query", "scaling", "tamper")
ROUND_TWO = ("steal", "membership", "shortcut", "hopskipjump", "poison")
QUICK = {"junk": {"n": 60}, "perturb": {"limit": 4, "steps": 3}, "query": {"limit": 2, "budget": 30},
         "steal": {"counts": (8, 16), "transfer_limit": 4, "transfer_eps": (8 / 255,), "query_limit": 2, "budget": 20},
         "membership": {"boots": 20}, "shortcut": {"limit": 3},
         "hopskipjump": {"limit": 2, "max_iter": 2, "max_eval": 30, "budget": 100},
         "poison": {"fractions": (0.25,), "radius": 0.25}}  # the toy model's frozen 96 px features see a big dot


class Clock:
    """Seconds left of the budget."""

    def __init__(self, budget_seconds: float):
        self.start, self.budget = time.time(), budget_seconds

    def left(self) -> float:
        return self.budget - (time.time() - self.start)


def _options(clock: Clock, quick: bool) -> dict[str, dict]:
    """Each attack's counts: QUICK's, else its defaults scaled down as the budget runs low (checked when it starts)."""
    if quick:
        return QUICK
    short = clock.left() < 300
    return {"junk": {}, "perturb": {"limit": 8, "steps": 5} if short else {"limit": 16, "steps": 10},
            "query": {"limit": 4 if short else 8},
            "steal": {"counts": (100, 300), "transfer_limit": 24} if clock.left() < 600 else {},
            "membership": {}, "shortcut": {"limit": 10 if clock.left() < 300 else 40},
            "hopskipjump": {"limit": 2, "max_iter": 5, "budget": 500}, "poison": {"fractions": (0.1,)}}


def _attempt(name: str, out: Path, clock: Clock, attack: Callable[[], dict], needs: float = 0) -> dict:
    """The attack's result, or why it was skipped (the budget spent, less of it left than the attack
    ``needs``, or photos that cannot serve it), written as its JSON and Markdown either way."""
    if clock.left() <= 0:
        reason = "the time budget was spent"
    elif clock.left() < needs:
        reason = f"it needs about {needs:.0f} s and {clock.left():.0f} s of the budget were left"
    else:
        try:
            return attack()
        except (ValueError, FileNotFoundError) as err:
            reason = str(err)
    (out / f"{name}.md").write_text(f"# {name.capitalize()}\n\nSkipped: {reason}.\n")
    return report.save_report(out, name, {"skipped": reason})


def _run_attacks(model: Predictor, data: Path, out: Path, clock: Clock, quick: bool, rate_limit: int) -> dict:
    from PIL import Image
    from skimage import data as skdata

    from huskyai.images.decode import load_image
    from huskyai.redteam.shortcut import shortcut_check

    photos, labels = report._sample(data, model, 2)
    hidden = load_image(next((p for p, lab in zip(photos, labels) if lab == model.positive), photos[0]))
    steps: dict[str, Callable[[dict], dict]] = {
        "tamper": lambda o: report.run_tamper(model.export_dir, out),
        "junk": lambda o: report.run_junk(model, out, **o),
        "scaling": lambda o: report.run_scaling(model, out, Image.fromarray(skdata.coffee()), hidden),
        "query": lambda o: report.run_query(model, data, out, rate_limit=rate_limit, **o),
        "perturb": lambda o: report.run_perturb(model, data, out, **o),
        "steal": lambda o: runs.run_steal(model, [data], out, rate_limit=rate_limit, **o),
        "membership": lambda o: runs.run_membership(model, [data], out, **o),
        "shortcut": lambda o: shortcut_check(model, data, out, **o),
        "hopskipjump": lambda o: runs.run_hopskipjump(model, [data], out, rate_limit=rate_limit, **o),
        "poison": lambda o: runs.run_poison([data], out, keep_work=False, arch=model.card["arch"],
                                            size=model.preprocessing.size, **o),
    }
    # poisoning retrains the model: about its card's training time, and as long again to measure it
    needs = {"poison": 2 * model.card.get("training", {}).get("seconds", 0)}
    results = {}
    for name, step in steps.items():
        options = _options(clock, quick).get(name, {})
        if name in ROUND_ONE:  # the first round always runs (scaled down late): the card's numbers come from it
            results[name] = step(options)
        else:
            results[name] = _attempt(name, out, clock, partial(step, options), needs.get(name, 0))
    return results


def _steal_numbers(r: dict) -> dict:
    if "skipped" in r:
        return {"steal_skipped": r["skipped"]}
    rows = r["transfer"]["rows"]
    at8 = next((t for t in rows if t["eps"] == 8), rows[-1])
    return {"steal_queries": next(iter(r["curves"].values()))[-1]["queries"],
            "steal_agreement": {d: rows_[-1]["agreement"] for d, rows_ in r["curves"].items()},
            "steal_transfer_eps": at8["eps"], "steal_transfer_victim_fooled": at8["victim_fooled"]}


def _evasion_and_poison_numbers(h: dict, p: dict) -> dict:
    hsj = ({"hopskipjump_skipped": h["skipped"]} if "skipped" in h else
           {"hopskipjump_eps": h["eps"], "hopskipjump_success_rate": h["success_rate"],
            "hopskipjump_median_queries": h["median_queries"]})
    if "skipped" in p:
        return hsj | {"poison_skipped": p["skipped"]}
    row = p["rows"][0]
    return hsj | {"poison_fraction": row["fraction"], "poison_clean_accuracy": row["clean_accuracy"],
                  "poison_called_positive": [row["trigger"]["called_positive_clean"],
                                             row["trigger"]["called_positive_with_trigger"]],
                  "poison_detector": [row["detector"]["precision"], row["detector"]["recall"]]}


def _summary(model: Predictor, results: dict, seconds: float) -> dict:
    m, s = results["membership"], results["shortcut"]
    return {
        "model_sha256": model.model_sha256,
        "weights_sha256": model.card["files"]["model.safetensors"],  # survives adding this report to the card
        "junk_false_positive_rate": results["junk"]["false_positive_rate"],
        "clean_accuracy": results["perturb"]["clean_accuracy"],
        "pgd_accuracy": results["perturb"]["attacks"]["pgd"],
        "query_success_rate": results["query"]["success_rate"],
        "query_median_queries": results["query"]["median_queries"],
        "scaling_attack_defeated": results["scaling"]["huskyai_vs_cover_mae"] < results["scaling"][
            "huskyai_vs_hidden_mae"],
        "tamper_all_refused": results["tamper"]["all_refused"],
        **_steal_numbers(results["steal"]),
        **({"membership_skipped": m["skipped"]} if "skipped" in m else
           {"membership_auc": m["auc"], "membership_advantage": m["advantage"]}),
        **_evasion_and_poison_numbers(results["hopskipjump"], results["poison"]),
        "shortcut": f"skipped: {s['skipped']}" if "skipped" in s else s["headline"],
        "seconds": round(seconds, 1),
    }


def _round_two_rows(s: dict, positive: str) -> str:
    """The headline rows of the round-2 attacks (or why each was skipped)."""
    if "steal_agreement" in s:
        steal = (f"| surrogate's agreement after {s['steal_queries']} queries ("
                 + " / ".join(s["steal_agreement"]) + ") | "
                 + " / ".join(f"{v:.2f}" for v in s["steal_agreement"].values()) + " |\n"
                 f"| PGD on the stolen copy fools the victim ({s['steal_transfer_eps']:.0f}/255) | "
                 f"{s['steal_transfer_victim_fooled']:.0%} |\n")
    else:
        steal = f"| model stealing | skipped: {s['steal_skipped']} |\n"
    member = (f"| membership inference AUC, advantage over chance | {s['membership_auc']:.3f}, "
              f"{s['membership_advantage']:+.3f} |\n" if "membership_auc" in s
              else f"| membership inference | skipped: {s['membership_skipped']} |\n")
    hsj = (f"| HopSkipJump, label only: fooled within {s['hopskipjump_eps']}/255, median queries | "
           f"{s['hopskipjump_success_rate']:.0%}, {s['hopskipjump_median_queries']:.0f} |\n"
           if "hopskipjump_eps" in s else f"| HopSkipJump | skipped: {s['hopskipjump_skipped']} |\n")
    clean, dotted = s.get("poison_called_positive", (0, 0))
    poison = (f"| poisoned {s['poison_fraction']:.0%}: clean accuracy; non-{positive} called "
              f"{positive} clean -> with the dot; detector precision / recall | "
              f"{s['poison_clean_accuracy']:.2f}; {clean:.0%} -> {dotted:.0%}; "
              f"{s['poison_detector'][0]:.2f} / {s['poison_detector'][1]:.2f} |\n"
              if "poison_fraction" in s else f"| poisoning | skipped: {s['poison_skipped']} |\n")
    return steal + member + f"| shortcut (centre against background) | {s['shortcut']} |\n" + hsj + poison


def _write_readme(model: Predictor, data: Path, out: Path, s: dict) -> None:
    parts = [(out / f"{name}.md").read_text().replace("# ", "## ", 1) for name in ROUND_ONE + ROUND_TWO]
    (out / "README.md").write_text(
        f"# Husky AI robustness report\n\nModel `{model.model_sha256[:16]}`, data `{data}`, "
        f"{s['seconds']:.0f} s on this machine.\n\n"
        f"| headline | value |\n|---|---|\n"
        f"| junk images called {model.positive} | {s['junk_false_positive_rate']:.1%} |\n"
        f"| accuracy clean / PGD {', '.join(k.split('/')[0] for k in s['pgd_accuracy'])} of 255 | "
        f"{s['clean_accuracy']:.2f} / " + ", ".join(f"{v:.2f}" for v in s["pgd_accuracy"].values()) + " |\n"
        f"| black-box success, median queries | {s['query_success_rate']:.0%}, {s['query_median_queries']} |\n"
        f"| scaling attack defeated by the preprocessing | {s['scaling_attack_defeated']} |\n"
        f"| tampered files all refused | {s['tamper_all_refused']} |\n" + _round_two_rows(s, model.positive) + "\n"
        + "\n".join(parts))


def run_all(model: Predictor, data: Path, out: Path, budget_seconds: float = 900,
            rate_limit: int = DEFAULT_RATE_LIMIT, quick: bool = False) -> dict:
    """Every attack within about ``budget_seconds`` (round two is skipped once it is spent); writes
    README.md and summary.json in ``out``. ``quick``: small counts everywhere."""
    out.mkdir(parents=True, exist_ok=True)
    clock = Clock(budget_seconds)
    results = _run_attacks(model, data, out, clock, quick, rate_limit)
    summary = _summary(model, results, time.time() - clock.start)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _write_readme(model, data, out, summary)
    return summary
