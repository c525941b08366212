"""The price table: shipped prices, a user's file and the setting on top, and what a call costs."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import ModelPrice, get_settings
from extraction.errors import ConfigError
from extraction.llm.prices import cost, load_prices


def test_shipped_prices_name_their_source_and_price_every_mode() -> None:
    table = load_prices(get_settings())
    price = table.get("gpt-4o-mini")
    assert price is not None and price.input == 0.15 and price.output == 0.60
    assert "2026-12-02" in price.source
    sync = cost(price, 1_000_000, 100_000)
    assert sync == pytest.approx(0.15 + 0.06)
    assert cost(price, 1_000_000, 100_000, batch=True) == pytest.approx(sync / 2)
    # Half the prompt from the provider's cache: that half at the cached rate.
    assert cost(price, 1_000_000, 100_000, tokens_cached=500_000) == pytest.approx(
        0.5 * 0.15 + 0.5 * 0.075 + 0.06)
    # A dated snapshot and a gateway name take the family's price.
    assert table.get("gpt-4o-mini-2024-07-18") == price
    assert table.get("openai/gpt-4o-mini") == price


def test_unknown_models_have_no_price_and_local_models_cost_nothing() -> None:
    table = load_prices(get_settings())
    assert table.get("mystery-model") is None
    assert table.cost("mystery-model", 1000, 1000) is None
    assert table.cost("qwen2.5-coder-0.5b", 10**6, 10**6) == 0.0


def test_a_price_file_and_the_setting_override_the_shipped_table(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("models:\n  gpt-4o-mini: {input: 1.0, output: 2.0}\n"
                    "  house-model: {input: 0.5, output: 1.5, cached_input: 0.05, "
                    "batch_discount: 0.4}\n")
    table = load_prices(get_settings(llm_prices_file=path))
    assert table.get("gpt-4o-mini").input == 1.0  # type: ignore[union-attr]
    assert table.get("gpt-4o-mini").cached_rate == 1.0  # type: ignore[union-attr]
    assert table.cost("house-model", 10**6, 0, batch=True) == pytest.approx(0.2)
    both = load_prices(get_settings(llm_prices_file=path, llm_prices={
        "house-model": ModelPrice(input_per_million=9.0, output_per_million=9.0)}))
    assert both.get("house-model").input == 9.0  # type: ignore[union-attr]


@pytest.mark.parametrize("text, words", [
    ("models: [1, 2]", "needs a 'models:' mapping"),
    ("models:\n  m: {input: 1.0}\n", "model 'm' is not"),
    ("models:\n  m: {input: -1, output: 1}\n", "model 'm' is not"),
    ("models: {m: [", "not valid YAML"),
])
def test_a_malformed_price_file_is_named(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_prices(get_settings(llm_prices_file=path))
    assert words in caught.value.detail and str(path) in caught.value.detail
    with pytest.raises(ConfigError, match="cannot read the price table"):
        load_prices(get_settings(llm_prices_file=tmp_path / "missing.yaml"))
