"""The product's own algorithms: `surprise.AlgoBase` subclasses that run in the same workflow as
Surprise's, by name (`{"algorithm": "EASE"}`), with their own kernel (`kernels/`) and fold-in.

Unlike a user's "module:Class" algorithm, each has a registered kernel: `kernels.kernel_name`
accepts exactly these classes (never a subclass, which may change `estimate`).
"""

from __future__ import annotations

from surprise import AlgoBase

from .ease import EASE
from .implicit_als import ALS
from .implicit_knn import ItemKNN

__all__ = ["ALS", "EASE", "PRODUCT_ALGORITHMS", "ItemKNN"]

#: algorithm name (as given in the state machine input) -> class. ALS and ItemKNN are fitted by the
#: `implicit` library, which only their `fit` imports (Train's dependencies, not the predictors').
PRODUCT_ALGORITHMS: dict[str, type[AlgoBase]] = {"EASE": EASE, "ALS": ALS, "ItemKNN": ItemKNN}
