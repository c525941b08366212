"""Does the stored confidence rank wrong values first? Before and after the value–quote check.

Each scenario is a real sample run of the demo corpus (``examples/clinical_trials_corpus.py``,
20 reports as PDF/DOCX/TXT, the demo codebook's 8 variables) through the CLI — ingest, the
Prefect flow, the extractor, grounding, the support check, the database — against the fake
OpenAI-compatible server in its own process, over HTTP. The server answers from the corpus's
truth (``testing/trial_oracle.py``: right value, the sentence that states it, self-confidence
0.95 for all) and ``testing/answer_faults.py`` rewrites a share of the answers:

* ``correct``          no faults: the false-unsupported rate on right answers;
* ``wrong_value 25%``  a wrong value beside the right quote (one run per seed, pooled);
* ``wrong_quote 25%``  the right value with another sentence as its quote;
* ``spread``           wrong_value 25% with self-confidence spread over 0.5–1.0 (a self-report
                       with no signal), to choose the support factor.

Figures over the *answered* cells (status ok), wrong = not the known answer (the demo's
type-aware rule). "before" is the stored confidence with the support factor set to 1.0 (the
factor multiplies, so it is the stored value divided by it for unsupported cells); "after" is
what is stored. AUROC (scikit-learn's ``roc_auc_score``) of "lower confidence → wrong";
"caught@25%": share of the wrong values among the 25 % least confident cells, ties broken at
random (its expectation); "false-unsup.": right values flagged unsupported.

Usage::

    python -m benchmarks.bench_confidence              # every scenario, 2 seeds
    python -m benchmarks.bench_confidence --seeds 1    # quicker
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from sklearn.metrics import roc_auc_score

from examples.clinical_trials_corpus import truth_by_filename, write_corpus
from extraction.run.confidence import UNSUPPORTED_FACTOR
from scripts.demo import CODEBOOK, PROJECT, _same
from testing.fake_llm_server import FakeLLMProcess

REVIEW_SHARE = 0.25
FACTORS = (1.0, 0.75, 0.5, 0.3, 0.1)
CHALLENGER = "judge-model"
SPONSOR_ALIASES = {"Industry": ["Inc.", "Ltd.", "Pharmaceuticals", "Biotherapeutics"],
                   "Academic": ["University", "University Hospital"],
                   "Government": ["Ministry", "National Institute"]}


def _cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run([sys.executable, "-m", "extraction", *args, "--json"], env=env,
                          check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout)


def aliased_codebook(root: Path) -> Path:
    """The demo codebook with aliases for *sponsor_type*: the reports name the sponsor
    ("Norvale Pharmaceuticals Inc."), never the category, so without aliases the CATEGORY
    check cannot read it."""
    book = yaml.safe_load(CODEBOOK.read_text())
    for variable in book["variables"]:
        if variable["name"] == "sponsor_type":
            variable["category_aliases"] = SPONSOR_ALIASES
    path = root / "codebook.yaml"
    path.write_text(yaml.safe_dump(book, sort_keys=False))
    return path


def run_scenario(root: Path, name: str, responder: str, faults: Sequence[str],
                 seed: int, mode: str, *, flag: str = "--answer-fault",
                 settings: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One sample run of the whole corpus; the answered cells with their truth.

    ``flag`` is the fake server's option for ``faults`` (``--opinion-fault`` varies the
    answers per sample and model); ``settings`` are extra ``EXTRACTFLOW_*`` values."""
    home = root / f"{name}-{seed}"
    with FakeLLMProcess(model=["fake-model", CHALLENGER], responder=responder, seed=seed,
                        extra_args=[a for f in faults for a in (flag, f)]) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXTRACTFLOW_")}
        env.update({
            "EXTRACTFLOW_HOME": str(home), "EXTRACTFLOW_LLM_BASE_URL": server.base_url,
            "EXTRACTFLOW_LLM_API_KEY": "sk-bench", "EXTRACTFLOW_LLM_MODEL": "fake-model",
            "EXTRACTFLOW_LLM_CONCURRENCY": "4", "PYTHONPATH": str(Path.cwd()),
        })
        env.update({f"EXTRACTFLOW_{k.upper()}": v for k, v in (settings or {}).items()})
        _cli(env, "codebook", "apply", str(aliased_codebook(root)))
        _cli(env, "docs", "add", PROJECT, str(root / "corpus"), "--no-flow")
        job = _cli(env, "run", "sample", PROJECT, "--n", "20", "--mode", mode)
        results = _cli(env, "job", "results", job["id"], "--limit", "100000")
    rows = results["items"] if isinstance(results, dict) else results
    truth = truth_by_filename()
    cells = []
    for row in rows:
        if row["status"] != "ok":
            continue
        right = _same(row["variable"], row["value"], truth[row["filename"]][row["variable"]])
        cells.append({**row, "wrong": not right, "scenario": name, "seed": seed})
    return cells


def confidence_with(cell: dict[str, Any], factor: float) -> float:
    """The cell's confidence had the support factor been ``factor``."""
    value = cell["confidence"] or 0.0
    if cell["support"] == "unsupported":
        value = value / UNSUPPORTED_FACTOR * factor
    return value


def auroc(cells: list[dict[str, Any]], factor: float) -> float:
    wrong = [c["wrong"] for c in cells]
    if len(set(wrong)) < 2:
        return float("nan")
    return float(roc_auc_score(wrong, [-confidence_with(c, factor) for c in cells]))


def caught(cells: list[dict[str, Any]], factor: float, share: float = REVIEW_SHARE) -> float:
    """Expected share of the wrong values among the ``share`` least confident cells."""
    total_wrong = sum(c["wrong"] for c in cells)
    if not total_wrong:
        return float("nan")
    budget = round(len(cells) * share)
    groups: dict[float, list[bool]] = defaultdict(list)
    for c in cells:
        groups[round(confidence_with(c, factor), 6)].append(c["wrong"])
    found = 0.0
    for _, members in sorted(groups.items()):
        if budget <= 0:
            break
        take = min(budget, len(members))
        found += sum(members) * take / len(members)
        budget -= take
    return found / total_wrong


def false_unsupported(cells: list[dict[str, Any]]) -> tuple[int, int]:
    """Right values (with their own quote) flagged unsupported, of all such values."""
    right = [c for c in cells if not c["wrong"] and not c.get("moved")]
    return sum(c["support"] == "unsupported" for c in right), len(right)


def _pct(x: float) -> str:
    return "  n/a" if math.isnan(x) else f"{x:5.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="wrong_value runs to pool")
    parser.add_argument("--mode", default="per_document", choices=["per_document",
                                                                    "per_variable"])
    parser.add_argument("--opinions-only", action="store_true",
                        help="only the second-opinion scenarios (and the correct run)")
    args = parser.parse_args()
    if args.opinions_only:
        opinions_main(args.seeds, args.mode)
        return
    types = {v["name"]: v["type"] for v in yaml.safe_load(CODEBOOK.read_text())["variables"]}
    oracle, spread = "testing.trial_oracle:TrialOracle", "testing.trial_oracle:SpreadOracle"
    share = f"{REVIEW_SHARE:g}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_corpus(root / "corpus")
        scenarios: dict[str, list[dict[str, Any]]] = {
            "correct": run_scenario(root, "correct", oracle, [], 1, args.mode),
            "wrong_value 25%": [c for s in range(1, args.seeds + 1) for c in run_scenario(
                root, "wrong_value", oracle, [f"wrong_value:{share}"], s, args.mode)],
            "wrong_quote 25%": run_scenario(root, "wrong_quote", oracle,
                                            [f"wrong_quote:{share}"], 1, args.mode),
            "spread": [c for s in range(1, args.seeds + 1) for c in run_scenario(
                root, "spread", spread, [f"wrong_value:{share}"], s, args.mode)],
        }

    # A wrong quote is one that differs from the one the same cell had without faults.
    reference = {(c["filename"], c["variable"]): c["evidence"] for c in scenarios["correct"]}
    for c in scenarios["wrong_quote 25%"]:
        c["moved"] = reference.get((c["filename"], c["variable"])) != c["evidence"]
    moved = [c for c in scenarios["wrong_quote 25%"] if c["moved"]]

    print(f"\nmode {args.mode}; support factor stored: {UNSUPPORTED_FACTOR}; review budget "
          f"{REVIEW_SHARE:.0%} of the answered cells\n")
    print(f"{'scenario':<17} {'cells':>5} {'wrong':>5} {'AUROC before':>12} {'after':>6} "
          f"{'caught@25% before':>17} {'after':>6} {'false-unsup.':>13}")
    for name, cells in scenarios.items():
        flagged, right = false_unsupported(cells)
        print(f"{name:<17} {len(cells):>5} {sum(c['wrong'] for c in cells):>5} "
              f"{auroc(cells, 1.0):>12.3f} {auroc(cells, UNSUPPORTED_FACTOR):>6.3f} "
              f"{_pct(caught(cells, 1.0)):>17} {_pct(caught(cells, UNSUPPORTED_FACTOR)):>6} "
              f"{flagged:>5}/{right:<4} {_pct(flagged / max(right, 1))}")

    print("targets (wrong_value 25%): AUROC after >= 0.9, caught@25% after >= 80%, "
          "false-unsupported <= 2%")
    counts = {s: sum(c["support"] == s for c in moved)
              for s in ("unsupported", "not_checkable", "supported")}
    print(f"\nwrong_quote 25%: {len(moved)} right values quoted with another sentence "
          "(not counted as false-unsupported above): "
          + ", ".join(f"{k} {v}" for k, v in counts.items()))

    print("\nwrong_value 25% per variable (support of wrong and of right values)")
    print(f"{'variable':<16} {'type':<9} {'wrong':>5} {'unsup.':>6} {'not chk':>7} "
          f"{'right':>5} {'unsup.':>6} {'not chk':>7}")
    pooled = scenarios["wrong_value 25%"] + scenarios["correct"]
    for variable, kind in types.items():
        mine = [c for c in pooled if c["variable"] == variable]
        bad = [c for c in mine if c["wrong"]]
        good = [c for c in mine if not c["wrong"]]
        print(f"{variable:<16} {kind:<9} {len(bad):>5} "
              f"{sum(c['support'] == 'unsupported' for c in bad):>6} "
              f"{sum(c['support'] == 'not_checkable' for c in bad):>7} {len(good):>5} "
              f"{sum(c['support'] == 'unsupported' for c in good):>6} "
              f"{sum(c['support'] == 'not_checkable' for c in good):>7}")

    print("\nchoosing the factor: 'spread' (self-confidence 0.5–1.0, no signal in it) and "
          "wrong_value 25% (0.95 for all)")
    print(f"{'factor':>6} {'AUROC spread':>12} {'caught@25% spread':>17} "
          f"{'AUROC 0.95':>10} {'caught@25% 0.95':>15} {'right value keeps':>17}")
    for factor in FACTORS:
        s, w = scenarios["spread"], scenarios["wrong_value 25%"]
        print(f"{factor:>6} {auroc(s, factor):>12.3f} {_pct(caught(s, factor)):>17} "
              f"{auroc(w, factor):>10.3f} {_pct(caught(w, factor)):>15} {factor:>17.0%}")
    unsupported = [c for c in pooled if c["support"] == "unsupported" and not c["wrong"]]
    for c in unsupported[:10]:
        print(f"  right but unsupported: {c['variable']}={c['value']!r} "
              f"quote={c['evidence']!r}: {c['support_reason']}")
    opinions_main(args.seeds, args.mode)


#: Second-opinion scenarios: the fake server's ``--opinion-fault`` keeps the first answers of
#: ``--answer-fault wrong_value:0.25`` and varies samples (a wrong first answer repeated 30 %
#: of the time, a right one wrong 5 %) and the challenger (wrong on its own 10 % of cells).
OPINION_FAULTS = ["wrong_value:0.25", "repeat:0.3", "noise:0.05", "challenger:0.1"]
OPINION_SCENARIOS: dict[str, tuple[dict[str, str], int]] = {
    "quote check alone": ({}, 0),
    "+ self-consistency k=2": ({"second_opinion_samples": "2"}, 2),
    "+ challenger": ({"challenger_model": CHALLENGER}, 1),
    "+ both": ({"second_opinion_samples": "2", "challenger_model": CHALLENGER}, 3),
}


def opinions_main(seeds: int, mode: str) -> None:
    """AUROC and review-budget catch on wrong_value 25 %: the quote check alone, then with
    self-consistency and a challenger; false-unsupported and false-disagreement rates on the
    correct answers."""
    oracle = "testing.trial_oracle:TrialOracle"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_corpus(root / "corpus")
        # right first answers; samples and the challenger still err now and then
        correct = run_scenario(root, "correct-opinions", oracle,
                               ["wrong_value:0", *OPINION_FAULTS[1:]], 1, mode,
                               flag="--opinion-fault", settings=OPINION_SCENARIOS["+ both"][0])
        runs = {name: [c for s in range(1, seeds + 1) for c in run_scenario(
            root, f"opinions{index}", oracle, OPINION_FAULTS, s, mode, flag="--opinion-fault",
            settings=settings)] for index, (name, (settings, _)) in
            enumerate(OPINION_SCENARIOS.items())}
    flagged, right = false_unsupported(correct)
    split = sum(c.get("opinion") == "split" for c in correct)
    print(f"\nsecond opinions, {mode}, wrong_value 25% (--opinion-fault "
          f"{' '.join(OPINION_FAULTS)}), {seeds} seed(s) pooled; factor stored: support "
          f"{UNSUPPORTED_FACTOR}, challenger disagreement 0.5, self-consistency (1+agree)/(1+k)")
    print(f"correct first answers (samples and challenger on, erring as above): "
          f"{flagged}/{right} flagged unsupported ({flagged / max(right, 1):.1%}), "
          f"{split}/{len(correct)} with a disagreeing second opinion")
    print("AUROC and caught@25% of the stored confidence, and (in brackets) of the same "
          "without the quote check's factor: what the second opinions are worth alone")
    print(f"{'':<24} {'cells':>5} {'wrong':>5} {'AUROC':>6} {'(alone)':>7} {'caught@25%':>10} "
          f"{'(alone)':>7} {'extra calls/doc':>15} {'wrong split':>11} {'right split':>11}")
    for name, cells in runs.items():
        extra = OPINION_SCENARIOS[name][1] * (1 if mode == "per_document" else 8)
        stored = [{**c, "support": None} for c in cells]  # the stored value as it is
        wrong_split = sum(c["wrong"] and c.get("opinion") == "split" for c in cells)
        right_split = sum(not c["wrong"] and c.get("opinion") == "split" for c in cells)
        print(f"{name:<24} {len(cells):>5} {sum(c['wrong'] for c in cells):>5} "
              f"{auroc(stored, 1.0):>6.3f} {auroc(cells, 1.0):>7.3f} "
              f"{_pct(caught(stored, 1.0)):>10} {_pct(caught(cells, 1.0)):>7} {extra:>15} "
              f"{wrong_split:>11} {right_split:>11}")
    print("targets: AUROC >= 0.9 and caught@25% >= 80% with the quote check alone; "
          "false-unsupported <= 2%")


if __name__ == "__main__":
    main()
