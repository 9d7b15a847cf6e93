"""The installed locustfile: ``locust -f <this file>`` replays a scenario; ``flashsale
replay`` runs Locust on it, so a wheel install replays without a source checkout.

It only names the classes Locust looks for (:mod:`flashsale.replay.locust_app` holds
them); ``locustfiles/flashsale.py``, the example for ``locust -f`` users, imports
them from here. Import it only inside a Locust process (it brings gevent).
"""

import os
import sys

# Locust imports this file as a top-level module ("locustfile") with this folder first
# on sys.path, where its siblings (session.py, target.py, scale.py...) would shadow any
# top-level module of those names. Step aside while the package is imported.
_here = os.path.dirname(os.path.abspath(__file__))
_path = sys.path[:]
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
try:
    from flashsale.replay.locust_app import HumanBuyer, SalePacer, ScalperBot, ScenarioReplay
finally:
    sys.path[:] = _path

__all__ = ["HumanBuyer", "SalePacer", "ScalperBot", "ScenarioReplay"]
