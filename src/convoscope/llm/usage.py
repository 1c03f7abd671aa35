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


class PriceTable:
    def __init__(self, overrides: dict[str, tuple[float, float]]):
        self._prices = {**BUILTIN_PRICES, **overrides}

    def lookup(self, model: str | None) -> tuple[float, float] | None:
        """None for an unknown model; model None means a local backend, which costs nothing."""
        if model is None:
            return (0.0, 0.0)
        if model in self._prices:
            return self._prices[model]
        matches = [name for name in self._prices if model.startswith(name)]
        return self._prices[max(matches, key=len)] if matches else None

    def cost(self, model: str | None, input_tokens: int, output_tokens: int) -> float:
        price = self.lookup(model)
        if price is None:
            return 0.0
        return (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000


@dataclass
class RoleUsage:
    backend: str
    calls: int = 0  # responses returned, cached or not
    cached_calls: int = 0
    failed: int = 0
    requests: int = 0  # answered backend requests, schema re-asks included
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
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
        row = self.tasks.setdefault(task, {"calls": 0, "cached_calls": 0, "failed": 0, "input_tokens": 0, "output_tokens": 0})
        row["calls"] += 1
        row["cached_calls"] += int(cached)
        row["failed"] += int(failed)
        row["input_tokens"] += usage.input_tokens
        row["output_tokens"] += usage.output_tokens

    def role(self, role: str, backend: str) -> RoleUsage:
        if role not in self.roles:
            self.roles[role] = RoleUsage(backend=backend)
        return self.roles[role]

    def reserve(self, model: str | None, input_tokens: int, max_tokens: int) -> float:
        worst = self.prices.cost(model, input_tokens, max_tokens)
        if self.max_cost_usd is not None and (self.halted or self.spent_usd + self.reserved_usd + worst > self.max_cost_usd):
            self.halted = True
            raise BudgetExceeded(
                f"stopped before crossing the cost cap of ${self.max_cost_usd:.2f} "
                f"(spent ${self.spent_usd:.4f}, in flight ${self.reserved_usd:.4f}); finished work is kept"
            )
        self.reserved_usd += worst
        return worst

    def release(self, reserved: float) -> None:
        self.reserved_usd = max(0.0, self.reserved_usd - reserved)

    def record(self, role: RoleUsage, model: str | None, usage: Usage) -> None:
        cost = self.prices.cost(model, usage.input_tokens, usage.output_tokens)
        role.requests += 1
        role.input_tokens += usage.input_tokens
        role.output_tokens += usage.output_tokens
        role.cost_usd += cost
        role.price_known = self.prices.lookup(model) is not None
        self.spent_usd += cost

    def summary(self) -> dict:
        roles = {name: asdict(r) for name, r in self.roles.items()}
        totals = {
            key: sum(r[key] for r in roles.values())
            for key in ("calls", "cached_calls", "failed", "requests", "retries", "input_tokens", "output_tokens", "cost_usd")
        }
        notes = [f"unknown price for {r['backend']}: its cost is counted as 0" for r in roles.values() if not r["price_known"]]
        return {"roles": roles, "total": totals, "tasks": {k: dict(v) for k, v in self.tasks.items()},
                "max_cost_usd": self.max_cost_usd, "notes": notes}
