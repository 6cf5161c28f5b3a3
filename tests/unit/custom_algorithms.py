"""A user's own Surprise algorithms, imported by the tests as "tests.unit.custom_algorithms:Name"."""

from __future__ import annotations

from typing import Any

from surprise import AlgoBase, BaselineOnly, PredictionImpossible


class ShiftedBaseline(BaselineOnly):  # type: ignore[misc]
    """A subclass that changes `estimate`: the BaselineOnly kernel would be wrong for it."""

    def estimate(self, u: Any, i: Any) -> float:
        est: float = super().estimate(u, i)
        return est + (0.25 if isinstance(i, int) and i % 3 == 0 else 0.0)


class ItemMean(AlgoBase):  # type: ignore[misc]
    """An algorithm of one's own: the item's mean rating; impossible for unknown items."""

    def fit(self, trainset: Any) -> ItemMean:
        AlgoBase.fit(self, trainset)
        self.means = [
            sum(r for _, r in trainset.ir[i]) / len(trainset.ir[i]) for i in range(trainset.n_items)
        ]
        return self

    def estimate(self, u: Any, i: Any) -> float:
        if not self.trainset.knows_item(i):
            raise PredictionImpossible("unknown item")
        return float(self.means[i])


class CheckedAlgo(ItemMean):
    """An algorithm of one's own that checks its parameter when built, as Extract builds it."""

    def __init__(self, size: int = 1) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a whole number of at least 1, got {size!r}")
        super().__init__()
        self.size = size
