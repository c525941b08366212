"""The corpus generator's command line: ``python -m examples.clinical_trials_corpus``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from examples.clinical_trials_corpus import RECORDS, main


def test_corpus_command_writes_the_reports_and_their_answers(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    main(["corpus", str(tmp_path / "trials")])
    written = sorted(p.name for p in (tmp_path / "trials").iterdir())
    assert written == sorted(r.filename for r in RECORDS) and len(written) == 20
    truth = json.loads((tmp_path / "trials-truth.json").read_text())
    assert set(truth) == set(written)
    assert "Wrote 20 reports" in capsys.readouterr().out


def test_without_a_command_it_says_how_to_use_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2 and "corpus" in capsys.readouterr().err
