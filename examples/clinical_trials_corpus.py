"""A small synthetic corpus for the demo: clinical trial reports with known answers.

Twenty made-up trial reports (PDF, DOCX and TXT) are written from records whose true values
are known, so the demo can print how accurate the extraction was per variable. The reports
vary their wording on purpose (written numbers, month names, "not randomised", sponsors named
by kind) so the task is not trivial; a few leave a variable unstated, where the right answer is
"not found".
"""

from __future__ import annotations

import csv
import json
import random
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import docx
import pymupdf

__all__ = ["RECORDS", "TrialRecord", "main", "truth_by_filename", "write_corpus",
           "write_gold_csv"]

_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_WORDS = {24: "twenty-four", 12: "twelve", 40: "forty", 60: "sixty", 18: "eighteen"}


@dataclass(frozen=True)
class TrialRecord:
    """The truth about one made-up trial (None = the report does not say)."""

    filename: str
    trial_title: str
    condition: str
    phase: str
    sponsor_type: str | None
    enrollment: int | None
    start_date: str | None  # YYYY-MM
    randomized: bool | None
    primary_outcome: str


_CONDITIONS = [
    ("type 2 diabetes", "change in HbA1c from baseline at week 26"),
    ("chronic migraine", "number of monthly migraine days at week 12"),
    ("moderate asthma", "rate of severe exacerbations over 52 weeks"),
    ("major depressive disorder", "change in MADRS total score at week 8"),
    ("rheumatoid arthritis", "proportion of patients reaching ACR50 at week 24"),
    ("heart failure", "time to first hospitalisation for heart failure"),
    ("plaque psoriasis", "proportion of patients with PASI 90 at week 16"),
    ("knee osteoarthritis", "change in WOMAC pain score at month 6"),
    ("atrial fibrillation", "incidence of stroke or systemic embolism at 12 months"),
    ("chronic kidney disease", "decline in eGFR over 24 months"),
]
_DRUGS = ["Lumetrazine", "Orvacept", "Brivanolol", "Cetraflox", "Dapremab", "Elunaride",
          "Fostavir", "Glimacort", "Helixostat", "Iprelumab"]
_PHASES = ["Phase 1", "Phase 2", "Phase 3", "Phase 4", "Not applicable"]
_SPONSORS = {
    "Industry": ["Norvale Pharmaceuticals Inc.", "Kestrel Biotherapeutics Ltd."],
    "Academic": ["the University of Eastbridge", "Westmoor University Hospital"],
    "Government": ["the National Institute of Health Research", "the Ministry of Health"],
}


def _records(seed: int = 7) -> list[TrialRecord]:
    rng = random.Random(seed)
    records: list[TrialRecord] = []
    for i in range(20):
        condition, outcome = _CONDITIONS[i % len(_CONDITIONS)]
        drug = _DRUGS[i % len(_DRUGS)]
        phase = _PHASES[i % 5] if i % 7 else "Phase 3"
        device = phase == "Not applicable"
        title = (f"A {'randomised' if i % 3 else 'single-arm'} study of the "
                 f"{'KneeFlex device' if device else drug} in adults with {condition}")
        sponsor = rng.choice(list(_SPONSORS)) if i % 9 != 4 else None
        enrollment = rng.choice([24, 12, 40, 60, 18, 120, 248, 1032, 356, 85])
        enrollment = None if i % 11 == 6 else enrollment
        start = f"{rng.randint(2015, 2024)}-{rng.randint(1, 12):02d}"
        start = None if i % 8 == 5 else start
        randomized = bool(i % 3) if i % 10 != 9 else None
        ext = ["pdf", "docx", "txt"][i % 3]
        records.append(TrialRecord(f"trial_{i + 1:02d}.{ext}", title, condition, phase,
                                   sponsor, enrollment, start, randomized, outcome))
    return records


RECORDS: list[TrialRecord] = _records()


def _paragraphs(rec: TrialRecord, index: int) -> list[str]:
    rng = random.Random(index)
    paras = [rec.trial_title, "Summary report"]
    sponsor = ""
    if rec.sponsor_type:
        name = rng.choice(_SPONSORS[rec.sponsor_type])
        sponsor = f" The trial is funded by {name}" + ("" if name.endswith(".") else ".")
    phase_text = ("The study is a device investigation and has no drug development phase."
                  if rec.phase == "Not applicable" else f"This is a {rec.phase} trial.")
    paras.append(f"Background. The trial studies {rec.condition}. {phase_text}{sponsor}")
    design = []
    if rec.randomized is True:
        design.append("Participants were randomly assigned in a 1:1 ratio to the study "
                      "treatment or placebo.")
    elif rec.randomized is False:
        design.append("All participants received the study treatment; the trial was not "
                      "randomised and had no control group.")
    if rec.start_date:
        year, month = rec.start_date.split("-")
        design.append(f"The first participant was enrolled in {_MONTHS[int(month) - 1]} "
                      f"{year}.")
    if rec.enrollment is not None:
        count = _WORDS.get(rec.enrollment, f"{rec.enrollment:,}")
        target = rec.enrollment + rng.choice([10, 20, 50])
        design.append(f"The trial planned to recruit {target} participants; in total {count} "
                      "participants were enrolled.")
    paras.append("Design. " + " ".join(design) if design else "Design. Details follow.")
    paras.append(f"Outcomes. The primary outcome was the {rec.primary_outcome}. Secondary "
                 "outcomes included safety and tolerability.")
    paras.append("Results are reported in a separate publication.")
    return paras


def _write(path: Path, paragraphs: list[str]) -> None:
    if path.suffix == ".pdf":
        doc = pymupdf.open()
        page = doc.new_page()
        page.insert_textbox(pymupdf.Rect(50, 50, 545, 792), "\n\n".join(paragraphs),
                            fontsize=10)
        doc.save(path)
        doc.close()
    elif path.suffix == ".docx":
        document = docx.Document()
        document.add_heading(paragraphs[0], level=1)
        for text in paragraphs[1:]:
            document.add_paragraph(text)
        document.save(str(path))
    else:
        path.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")


def write_corpus(directory: Path) -> list[Path]:
    """Write the twenty reports into ``directory``; returns the reports.

    The known answers go beside the folder (``<directory>-truth.json``), not into it, so that
    ingesting the folder reads only the reports.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, record in enumerate(RECORDS):
        path = directory / record.filename
        _write(path, _paragraphs(record, index))
        paths.append(path)
    truth = {r.filename: asdict(r) for r in RECORDS}
    (directory / "truth.json").unlink(missing_ok=True)  # where older versions wrote it
    directory.with_name(f"{directory.name}-truth.json").write_text(
        json.dumps(truth, indent=2), encoding="utf-8")
    return paths


def truth_by_filename() -> dict[str, dict[str, object]]:
    """The true value of each variable, keyed by file name then variable name."""
    return {r.filename: {k: v for k, v in asdict(r).items() if k != "filename"}
            for r in RECORDS}


def _gold_cell(value: object) -> str:
    if value is None:
        return ""  # an empty gold cell: the report does not state it
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_gold_csv(path: Path) -> Path:
    """The known answers as a wide gold file for ``extractflow evaluate --gold``.

    One row per report (``filename``), one column per codebook variable; an empty cell means
    the report does not state the variable.
    """
    names = [f.name for f in fields(TrialRecord)]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for record in RECORDS:
            writer.writerow([_gold_cell(getattr(record, name)) for name in names])
    return path


def main(argv: list[str] | None = None) -> None:
    """``python -m examples.clinical_trials_corpus corpus DIR`` writes the twenty reports
    (and ``DIR-truth.json`` beside the folder); ``… gold [PATH]`` (re)writes the gold file."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m examples.clinical_trials_corpus",
        description="The demo's synthetic clinical trial reports, with known answers.")
    commands = parser.add_subparsers(dest="command", required=True)
    corpus = commands.add_parser("corpus", help="write the twenty reports (PDF, DOCX, TXT)")
    corpus.add_argument("directory", type=Path, help="folder to write them into")
    gold = commands.add_parser("gold", help="write the known answers as a wide gold CSV")
    gold.add_argument("path", type=Path, nargs="?",
                      default=Path(__file__).with_name("clinical_trials.gold.csv"))
    args = parser.parse_args(argv)
    if args.command == "corpus":
        paths = write_corpus(args.directory)
        print(f"Wrote {len(paths)} reports to {args.directory} (answers: "
              f"{args.directory.with_name(args.directory.name + '-truth.json')})")
    else:
        print(f"Wrote {write_gold_csv(args.path)}")


if __name__ == "__main__":
    main(sys.argv[1:])
