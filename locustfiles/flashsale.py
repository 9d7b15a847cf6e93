"""Replay a flash-sale scenario with Locust: ``locust -f locustfiles/flashsale.py --scenario FILE``.

Headless::

    locust -f locustfiles/flashsale.py --headless --scenario scenarios/smoke.toml \
        --host http://127.0.0.1:8000 --admin-token "$TOKEN" --scale 0.5

With the web UI, drop ``--headless`` and press Start (the shape sets the users);
with ``--processes 4``, or ``--master`` here and ``--worker`` elsewhere, the
master merges every worker's journeys and requests into one Outcome. All the
machinery lives in flashsale.replay; this file only names the classes Locust looks
for, from the package's own locustfile (flashsale/replay/locustfile.py, the one
``flashsale replay`` runs, so that a wheel install replays too).
"""

import os
import sys

# Locust imports this file as a module named after it ("flashsale"), with this
# folder first on sys.path: both would shadow the flashsale package. Step aside
# while the package is imported.
_here = os.path.dirname(os.path.abspath(__file__))
if sys.modules.get("flashsale") is sys.modules.get(__name__):
    sys.modules.pop("flashsale", None)
_path = sys.path[:]
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
try:
    from flashsale.replay.locustfile import HumanBuyer, SalePacer, ScalperBot, ScenarioReplay
finally:
    sys.path[:] = _path

__all__ = ["HumanBuyer", "SalePacer", "ScalperBot", "ScenarioReplay"]
