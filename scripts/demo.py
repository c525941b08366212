"""The README's main command: the whole pipeline, end to end, on embedded defaults.

Apply the example codebook, ingest the bundled corpus of twenty trial reports, run a sample,
review it in the review workbook (verdicts from the corpus's known answers, as a careful
reviewer would give them), refine the prompts (a rewrite is kept only if it does at least as
well on held-out reviewed documents), run every document, export every format, and print the
accuracy per variable after the sample and at the end.
Each step is the CLI command a user would type, echoed before it runs.

The LLM is the endpoint in EXTRACTFLOW_LLM_BASE_URL when set; otherwise the default bundled
local model (EXTRACTFLOW_LLM_LOCAL_MODEL, Qwen2.5-Coder-0.5B unless set; real and offline) is
installed if needed, started, and stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

from examples.clinical_trials_corpus import truth_by_filename, write_corpus

CODEBOOK = ROOT / "examples" / "clinical_trials.codebook.yaml"
PROJECT = "clinical-trials"
OUT = Path(os.environ.get("EXTRACTFLOW_DEMO_OUTPUT", ROOT / "demo-output"))
FORMATS = {"csv-wide": "csv", "csv-long": "csv", "xlsx": "xlsx", "json": "json",
           "parquet": "parquet"}


def extractflow(*args: str, capture_json: bool = False, may_fail: bool = False) -> Any:
    """Run one CLI command as a user would, echoing it first; parse its --json output.

    With ``may_fail`` a non-zero exit is returned as False instead of stopping the demo.
    """
    print(f"\n$ extractflow {' '.join(args)}", flush=True)
    cmd = [sys.executable, "-m", "extraction", *args]
    if not capture_json:
        ok = subprocess.run(cmd, check=not may_fail).returncode == 0
        _check_local_model()
        return ok
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    _check_local_model()
    return json.loads(done.stdout)


_LOCAL: list[Any] = []  # the bundled model's server, when the demo started one


def _check_local_model() -> None:
    """Stop the demo, with the server's last words, if the bundled model's server died."""
    if _LOCAL and not _LOCAL[0].is_running():
        raise SystemExit("The local model server stopped during the demo; its log ends with:\n"
                         + _LOCAL[0].log_tail(15))


def _same(variable: str, got: Any, truth: Any) -> bool:
    """Whether an extracted value matches the known answer (lenient for free text)."""
    if truth is None or got is None:
        return truth is None and got is None
    if variable in ("trial_title", "condition", "primary_outcome"):
        a, b = str(got).casefold().strip(" ."), str(truth).casefold().strip(" .")
        return a in b or b in a
    if variable == "enrollment":
        try:
            return float(got) == float(truth)
        except (TypeError, ValueError):
            return False
    if variable == "start_date":
        return str(got)[:7] == str(truth)[:7]
    return got == truth


def _results(job_id: str) -> list[dict[str, Any]]:
    data = extractflow("job", "results", job_id, "--limit", "100000", "--json", capture_json=True)
    return data["items"] if isinstance(data, dict) else data


def _review(job_id: str, truth: dict[str, dict[str, Any]]) -> int:
    """Review the sample in its workbook from the known answers; returns the corrections.

    A careful reviewer's work, done by openpyxl: export the review workbook, fill in the
    yellow columns (correct? / corrected value / comment) of every row, import it back.
    """
    from openpyxl import load_workbook

    from extraction.review.workbook import COLUMNS, REVIEW_SHEET

    rows = {row["id"]: row for row in _results(job_id)}
    workbook_path = OUT / "sample-review.xlsx"
    workbook_path.unlink(missing_ok=True)
    extractflow("review", "export", job_id, str(workbook_path))
    column = {key: index for index, (key, _) in enumerate(COLUMNS)}
    workbook = load_workbook(workbook_path)
    corrections = 0
    for cells in workbook[REVIEW_SHEET].iter_rows(min_row=2):
        row = rows.get(str(cells[column["extraction_id"]].value))
        if row is None:
            continue
        expected = truth[row["filename"]][row["variable"]]
        # a failed cell has no answer to confirm: it gets the right value (or "not stated")
        if row["status"] != "failed" and _same(row["variable"], row["value"], expected):
            cells[column["correct"]].value = "yes"
            continue
        corrections += 1
        cells[column["correct"]].value = "no"
        cells[column["comment"]].value = "demo review: the report says otherwise"
        if expected is not None:  # blank corrected value = not stated in the document
            cells[column["corrected"]].value = (str(expected).lower()
                                                if isinstance(expected, bool) else str(expected))
    workbook.save(workbook_path)
    extractflow("review", "import", str(workbook_path))
    return corrections


def _accuracy(job_id: str, truth: dict[str, dict[str, Any]]) -> dict[str, tuple[int, int]]:
    scores: dict[str, tuple[int, int]] = {}
    for row in _results(job_id):
        ok, total = scores.get(row["variable"], (0, 0))
        hit = _same(row["variable"], row["value"], truth[row["filename"]][row["variable"]])
        scores[row["variable"]] = (ok + hit, total + 1)
    return scores


def _print_accuracy(title: str, scores: dict[str, tuple[int, int]]) -> None:
    print(f"\n{title}")
    for variable, (ok, total) in scores.items():
        print(f"  {variable:<16} {ok:>3}/{total:<3} {ok / total:6.0%}" if total else variable)
    all_ok = sum(ok for ok, _ in scores.values())
    all_n = sum(n for _, n in scores.values())
    print(f"  {'all':<16} {all_ok:>3}/{all_n:<3} {all_ok / max(all_n, 1):6.0%}", flush=True)


def _start_llm(stack: ExitStack) -> None:
    if os.environ.get("EXTRACTFLOW_LLM_BASE_URL"):
        print(f"Using the LLM endpoint at {os.environ['EXTRACTFLOW_LLM_BASE_URL']}")
        return
    from config.settings import get_settings
    from extraction.llm import local_model
    from extraction.llm.model_catalog import get_model

    try:
        local_model.check_runtime()
    except local_model.LocalModelError:
        print("No EXTRACTFLOW_LLM_BASE_URL set: installing the local model runtime "
              "(builds llama-cpp-python once, ~5-10 minutes on 2 cores)", flush=True)
        subprocess.run(["bash", str(ROOT / "scripts" / "install-local-model.sh"),
                        sys.executable], check=True)
    model = get_model(get_settings().llm_local_model)
    print(f"Starting the bundled local model {model.name} ({model.title}; offline)",
          flush=True)
    server = stack.enter_context(local_model.start_local_server(model=model.name))
    _LOCAL.append(server)
    llm = server.llm_settings()
    os.environ.update({
        "EXTRACTFLOW_LLM_BASE_URL": llm["base_url"],
        "EXTRACTFLOW_LLM_API_KEY": llm["api_key"],
        "EXTRACTFLOW_LLM_MODEL": llm["model"],
        "EXTRACTFLOW_LLM_INSTRUCTOR_MODE": llm["mode"],
        # one small model process on 2 cores serves one call at a time: a second call in
        # flight only queues, and its wait counts against its timeout (a document's call
        # takes 15-70 s depending on the machine's load, a prompt rewrite longer)
        "EXTRACTFLOW_LLM_CONCURRENCY": os.environ.get("EXTRACTFLOW_LLM_CONCURRENCY", "1"),
        "EXTRACTFLOW_LLM_TIMEOUT": os.environ.get("EXTRACTFLOW_LLM_TIMEOUT", "600"),
    })


def main() -> None:
    # A `kill` (SIGTERM) unwinds like Ctrl-C, so the local model server is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    OUT.mkdir(parents=True, exist_ok=True)
    truth = truth_by_filename()
    corpus = write_corpus(OUT / "corpus")
    with ExitStack() as stack:
        _start_llm(stack)
        extractflow("codebook", "apply", str(CODEBOOK))
        extractflow("docs", "add", PROJECT, str(OUT / "corpus"))
        sample = extractflow("run", "sample", PROJECT, "--n", "6", "--seed", "1", "--json",
                             capture_json=True)
        print(f"sample job {sample['id']}: {sample['status']}")
        _print_accuracy("Accuracy of the sample (prompts v1) against the known answers:",
                        _accuracy(sample["id"], truth))
        corrections = _review(sample["id"], truth)
        print(f"Reviewed the sample: {corrections} value(s) corrected")
        if not extractflow("prompt", "refine", PROJECT, may_fail=True):
            print("Some prompts were not refined (no usable rewrite, or it did worse on the "
                  "held-out documents): they keep their current version, and the demo goes on.")
        extractflow("scorecard", PROJECT)
        full = extractflow("run", "full", PROJECT, "--json", capture_json=True)
        print(f"full job {full['id']}: {full['status']}")
        written = []
        for fmt, ext in FORMATS.items():
            target = OUT / f"clinical-trials-{fmt}.{ext}"
            extractflow("export", PROJECT, "--format", fmt, "-o", str(target), "--force",
                        "--include-confidence", "--include-source-text")
            written.append(target)
        scores = _accuracy(full["id"], truth)
        review_page = OUT / "review-full-run.html"  # the review page, least confident first
        extractflow("review", "html", full["id"], "-o", str(review_page), "--sort", "confidence")
    _print_accuracy("Accuracy of the full run against the corpus's known answers:", scores)
    print(f"\nCorpus: {len(corpus)} documents in {OUT / 'corpus'}")
    print("Exports:")
    for path in written:
        print(f"  {path}")
    print(f"Review page (open it in a browser): {review_page}")
    print(f"\nThe demo took {(time.monotonic() - started) / 60:.1f} minutes.")
    print("\nTo browse the runs in the Prefect UI: .venv/bin/prefect server start  "
          "(then open http://127.0.0.1:4200)")


if __name__ == "__main__":
    main()
