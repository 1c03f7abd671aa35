"""Token usage, cost per role, and the spending cap."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from convoscope.errors import BudgetExceeded
from convoscope.llm.base import Usage

# USD per 1M (input, output) tokens, list prices of the vendors' public APIs. A model matches the
# longest entry that is a prefix of its name, so dated snapshots ("claude-3-5-haiku-20241022") match.
BUILTIN_PRICES: dict[str, tuple[float, float]] = {
    "claude-3-haiku": (0.25, 1.25),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-3-opus": (15.00, 75.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4-5": (5.00, 25.00),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o3": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
}
# Prompt caching, as multiples of the input price. Anthropic: a 5-minute cache write costs 1.25x, a
# read 0.1x, for every model. OpenAI: no write surcharge; cached input at the model's listed discount.
ANTHROPIC_CACHE = (0.10, 1.25)  # (read, write)
OPENAI_CACHE_READ: dict[str, float] = {"gpt-4o": 0.5, "gpt-4o-mini": 0.5, "gpt-4.1": 0.25, "gpt-5": 0.1, "o3": 0.25, "o4-mini": 0.25}
# Both vendors' batch interfaces bill every token at half the list price; cache multipliers stack on it.
BATCH_DISCOUNT = 0.5


@dataclass(frozen=True)
class ModelPrice:
    """USD per 1M tokens."""

    input: float
    output: float
    cache_read: float
    cache_write: float

    @classmethod
    def of(cls, model: str, entry: tuple[float, ...]) -> "ModelPrice":
        """From a table entry (input, output[, cache_read[, cache_write]]); missing cache prices follow the vendor's rule."""
        input_price, output_price = entry[0], entry[1]
        if model.startswith("claude"):
            read, write = ANTHROPIC_CACHE[0] * input_price, ANTHROPIC_CACHE[1] * input_price
        else:
            discounts = [name for name in OPENAI_CACHE_READ if model.startswith(name)]
            read = (OPENAI_CACHE_READ[max(discounts, key=len)] if discounts else 1.0) * input_price
            write = input_price
        if len(entry) > 2:
            read = entry[2]
        if len(entry) > 3:
            write = entry[3]
        return cls(input_price, output_price, read, write)


FREE = ModelPrice(0.0, 0.0, 0.0, 0.0)


class PriceTable:
    def __init__(self, overrides: dict[str, tuple[float, ...]]):
        self._prices = {**BUILTIN_PRICES, **overrides}
        self._resolved: dict[str | None, ModelPrice | None] = {None: FREE}

    def lookup(self, model: str | None) -> ModelPrice | None:
        """None for an unknown model; model None means a local backend, which costs nothing."""
        if model not in self._resolved:
            assert model is not None
            matches = [name for name in self._prices if model.startswith(name)]
            name = model if model in self._prices else (max(matches, key=len) if matches else None)
            self._resolved[model] = ModelPrice.of(name, self._prices[name]) if name is not None else None
        return self._resolved[model]

    def cost(self, model: str | None, input_tokens: int, output_tokens: int, *, batch: bool = False) -> float:
        """Plain input and output tokens (no prompt cache), as `estimate` counts them."""
        return self.cost_of(model, Usage(input_tokens, output_tokens), batch=batch)

    def cost_of(self, model: str | None, usage: Usage, *, batch: bool = False) -> float:
        price = self.lookup(model)
        if price is None:
            return 0.0
        fresh = max(0, usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens)
        dollars = (
            fresh * price.input
            + usage.cache_read_tokens * price.cache_read
            + usage.cache_write_tokens * price.cache_write
            + usage.output_tokens * price.output
        ) / 1_000_000
        return dollars * (BATCH_DISCOUNT if batch else 1.0)

    def worst_case(self, model: str | None, input_tokens: int, max_tokens: int, *, batch: bool = False) -> float:
        """The most a request can cost: every input token at the dearer of the input and cache-write prices."""
        price = self.lookup(model)
        if price is None:
            return 0.0
        dollars = (input_tokens * max(price.input, price.cache_write) + max_tokens * price.output) / 1_000_000
        return dollars * (BATCH_DISCOUNT if batch else 1.0)


_TASK_FIELDS = ("calls", "cached_calls", "failed", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


@dataclass
class RoleUsage:
    backend: str
    calls: int = 0  # responses returned, cached or not
    cached_calls: int = 0
    failed: int = 0
    requests: int = 0  # answered backend requests, schema re-asks included
    retries: int = 0
    input_tokens: int = 0  # cache reads and writes included
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    batch_requests: int = 0  # requests answered through a batch interface (billed at the batch price)
    cost_usd: float = 0.0
    price_known: bool = True


@dataclass
class UsageLedger:
    """Counts per role and enforces `max_cost_usd`: before a request is sent, its worst-case cost
    (estimated input + max_tokens) is reserved; if spent + reserved would cross the cap, the request
    is refused with BudgetExceeded. Once that happens, every later request is refused too."""

    prices: PriceTable
    max_cost_usd: float | None = None
    roles: dict[str, RoleUsage] = field(default_factory=dict)
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    halted: bool = False
    # per pipeline task (facets, name, propose, ...): calls and the tokens their answers took, cached
    # answers included, so the cost model per conversation can be read off any run (billed or not)
    tasks: dict[str, dict[str, int]] = field(default_factory=dict)

    def record_task(self, task: str, usage: Usage, *, cached: bool, failed: bool) -> None:
        row = self.tasks.get(task)
        if row is None:
            row = self.tasks[task] = dict.fromkeys(_TASK_FIELDS, 0)
        row["calls"] += 1
        row["cached_calls"] += int(cached)
        row["failed"] += int(failed)
        row["input_tokens"] += usage.input_tokens
        row["output_tokens"] += usage.output_tokens
        row["cache_read_tokens"] += usage.cache_read_tokens
        row["cache_write_tokens"] += usage.cache_write_tokens

    def role(self, role: str, backend: str) -> RoleUsage:
        if role not in self.roles:
            self.roles[role] = RoleUsage(backend=backend)
        return self.roles[role]

    def reserve(self, model: str | None, input_tokens: int, max_tokens: int, *, batch: bool = False) -> float:
        worst = self.prices.worst_case(model, input_tokens, max_tokens, batch=batch)
        if self.max_cost_usd is not None and (self.halted or self.spent_usd + self.reserved_usd + worst > self.max_cost_usd):
            self.halted = True
            raise BudgetExceeded(
                f"stopped before crossing the cost cap of ${self.max_cost_usd:.2f} "
                f"(spent ${self.spent_usd:.4f}, in flight ${self.reserved_usd:.4f}); finished work is kept"
            )
        self.reserved_usd += worst
        return worst

    def hold(self, model: str | None, input_tokens: int, max_tokens: int, *, batch: bool = False) -> float:
        """A reservation that cannot be refused: for work already submitted (a resumed batch)."""
        worst = self.prices.worst_case(model, input_tokens, max_tokens, batch=batch)
        self.reserved_usd += worst
        return worst

    def release(self, reserved: float) -> None:
        self.reserved_usd = max(0.0, self.reserved_usd - reserved)

    def record(self, role: RoleUsage, model: str | None, usage: Usage, *, batch: bool = False) -> None:
        cost = self.prices.cost_of(model, usage, batch=batch)
        role.requests += 1
        role.batch_requests += int(batch)
        role.input_tokens += usage.input_tokens
        role.output_tokens += usage.output_tokens
        role.cache_read_tokens += usage.cache_read_tokens
        role.cache_write_tokens += usage.cache_write_tokens
        role.cost_usd += cost
        role.price_known = self.prices.lookup(model) is not None
        self.spent_usd += cost

    def summary(self) -> dict:
        roles = {name: asdict(r) for name, r in self.roles.items()}
        totals = {
            key: sum(r[key] for r in roles.values())
            for key in ("calls", "cached_calls", "failed", "requests", "batch_requests", "retries", "input_tokens", "output_tokens",
                        "cache_read_tokens", "cache_write_tokens", "cost_usd")
        }
        notes = [f"unknown price for {r['backend']}: its cost is counted as 0" for r in roles.values() if not r["price_known"]]
        return {"roles": roles, "total": totals, "tasks": {k: dict(v) for k, v in self.tasks.items()},
                "max_cost_usd": self.max_cost_usd, "notes": notes}
