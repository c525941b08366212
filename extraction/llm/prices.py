"""What LLM tokens cost: the price table, and the cost of a call or a run in each mode.

The table ships with the package (``extraction/llm/prices.yaml``: a handful of hosted models,
with the date and source of their prices); a user's YAML file of the same shape
(``EXTRACTFLOW_LLM_PRICES_FILE``) and the ``EXTRACTFLOW_LLM_PRICES`` setting override it,
model by model, in that order. Bundled local models (``extractflow llm local``) cost 0.
A model the table does not know has no price: callers then show tokens only and say so —
a guessed price would be worse than none.

Three ways to pay for the same tokens, priced by :func:`cost`:

* ``sync`` — every prompt token at the input price;
* ``cached`` — the prompt tokens the provider served from its prompt cache
  (``usage.prompt_tokens_details.cached_tokens``) at the cached-input price;
* ``batch`` — the provider's Batch API: the sync price times ``batch_discount``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from config.settings import ModelPrice, Settings
from extraction.errors import ConfigError

__all__ = ["Price", "PriceTable", "cost", "load_prices"]

_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4,8})$")


@dataclass(frozen=True)
class Price:
    """US dollars per 1,000,000 tokens of one model, and where the figures came from."""

    model: str
    input: float
    output: float
    cached_input: float | None = None
    batch_discount: float = 0.5
    cache_min_tokens: int = 0
    source: str = ""

    @property
    def cached_rate(self) -> float:
        return self.input if self.cached_input is None else self.cached_input

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "input_per_million": self.input,
                "cached_input_per_million": self.cached_rate,
                "output_per_million": self.output, "batch_discount": self.batch_discount,
                "source": self.source}


def cost(price: Price, tokens_in: int, tokens_out: int, *, tokens_cached: int = 0,
         batch: bool = False) -> float:
    """US dollars for one call's (or many calls') tokens.

    ``tokens_cached`` is the part of ``tokens_in`` read from the provider's prompt cache;
    ``batch`` applies the Batch API discount to everything.
    """
    cached = max(0, min(tokens_cached, tokens_in))
    usd = ((tokens_in - cached) * price.input + cached * price.cached_rate
           + tokens_out * price.output) / 1e6
    return usd * price.batch_discount if batch else usd


class PriceTable:
    """Prices by model name; :meth:`get` also finds a dated snapshot's family entry."""

    def __init__(self, prices: Mapping[str, Price] | None = None) -> None:
        self._prices = dict(prices or {})

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.get(model) is not None

    def __len__(self) -> int:
        return len(self._prices)

    @property
    def models(self) -> list[str]:
        return sorted(self._prices)

    def get(self, model: str | None) -> Price | None:
        """The price of ``model`` (``gpt-4o-mini-2024-07-18`` → ``gpt-4o-mini``), or None."""
        if not model:
            return None
        found = self._prices.get(model)
        if found is None:
            family = _DATE_SUFFIX.sub("", model)
            found = self._prices.get(family)
        if found is None and "/" in model:  # gateway names such as openai/gpt-4o-mini
            return self.get(model.rsplit("/", 1)[1])
        return found

    def cost(self, model: str | None, tokens_in: int, tokens_out: int, *,
             tokens_cached: int = 0, batch: bool = False) -> float | None:
        """:func:`cost` at ``model``'s price; None when the table has no price for it."""
        price = self.get(model)
        if price is None:
            return None
        return cost(price, tokens_in, tokens_out, tokens_cached=tokens_cached, batch=batch)

    def with_entries(self, prices: Mapping[str, Price]) -> PriceTable:
        """This table with ``prices`` on top (theirs win)."""
        return PriceTable({**self._prices, **prices})

    @classmethod
    def from_settings_prices(cls, prices: Mapping[str, ModelPrice | Price]) -> PriceTable:
        """A table of ``EXTRACTFLOW_LLM_PRICES``-style entries (or ready :class:`Price`)."""
        return cls({name: p if isinstance(p, Price) else _from_model_price(name, p)
                    for name, p in prices.items()})


def _from_model_price(name: str, entry: ModelPrice) -> Price:
    return Price(model=name, input=entry.input_per_million, output=entry.output_per_million,
                 cached_input=entry.cached_input_per_million,
                 batch_discount=entry.batch_discount, cache_min_tokens=entry.cache_min_tokens,
                 source="EXTRACTFLOW_LLM_PRICES")


def _parse(text: str, where: str) -> dict[str, Price]:
    """The models of a price file; a malformed entry is a ConfigError naming it."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"the price table {where} is not valid YAML: {exc}",
                          field="llm_prices_file") from exc
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ConfigError(f"the price table {where} needs a 'models:' mapping of model name "
                          "to {input, output, cached_input, batch_discount}",
                          field="llm_prices_file")
    source = str(data.get("source") or where)
    out: dict[str, Price] = {}
    for name, entry in models.items():
        try:
            if not isinstance(entry, dict):
                raise TypeError("an entry must be a mapping")
            checked = ModelPrice(
                input_per_million=entry["input"], output_per_million=entry["output"],
                cached_input_per_million=entry.get("cached_input"),
                batch_discount=entry.get("batch_discount", 0.5),
                cache_min_tokens=entry.get("cache_min_tokens", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"the price table {where}: model '{name}' is not "
                              f"{{input, output[, cached_input, batch_discount]}} in USD per "
                              f"1M tokens ({exc})", field="llm_prices_file") from exc
        out[str(name)] = replace(_from_model_price(str(name), checked), source=source)
    return out


@functools.lru_cache(maxsize=1)
def _shipped() -> dict[str, Price]:
    text = resources.files("extraction.llm").joinpath("prices.yaml").read_text("utf-8")
    return _parse(text, "extraction/llm/prices.yaml")


def _local_models() -> dict[str, Price]:
    from extraction.llm.model_catalog import CATALOG

    return {name: Price(model=name, input=0.0, output=0.0, batch_discount=1.0,
                        source="bundled local model") for name in CATALOG}


def load_prices(settings: Settings) -> PriceTable:
    """The price table for these settings: shipped, then the user's file, then the setting.

    Raises:
        ConfigError: The user's price file is missing or malformed.
    """
    table = PriceTable({**_local_models(), **_shipped()})
    path: Path | None = settings.llm_prices_file
    if path is not None:
        path = Path(path).expanduser()
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the price table {path}: {exc.strerror or exc}",
                              field="llm_prices_file") from exc
        table = table.with_entries(_parse(text, str(path)))
    if settings.llm_prices:
        table = table.with_entries({name: _from_model_price(name, entry)
                                    for name, entry in settings.llm_prices.items()})
    return table
