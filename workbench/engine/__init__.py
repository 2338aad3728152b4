"""The compiled engine every strategy kernel runs on: the leaf package below backtests,
templates, live sessions and the paper exchange.

* ``core``: the numba functions a kernel is built from (fills, stops, liquidation at the
  venue's tiers and mark price, funding, ruin, the metrics' running sums and their named
  ``M_*`` slots) and the compiled cache that follows its sources.
* ``indicators``: the indicators the templates and rule strategies read, computed once per
  distinct window for a whole sweep.

``core`` is imported first: it points numba's cache for every compiled function of the
workbench to a directory named by a hash of the compiled sources, so an edited kernel never
runs from a stale cache.
"""

from workbench.engine import core  # noqa: F401 - the hashed numba cache, before anything compiles
