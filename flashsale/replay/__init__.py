"""The Locust engine: replay a scenario's arrival schedule against a checkout service.

Shared by ``locust -f locustfiles/flashsale.py`` and ``flashsale replay``:

- :mod:`~flashsale.replay.scale` scales a sale down and thins its schedule;
- :mod:`~flashsale.replay.target` resolves the target and refuses remote ones
  unless configured and allowed;
- :mod:`~flashsale.replay.journey` is a buyer's journey against the target API;
- :mod:`~flashsale.replay.recorder` keeps raw rows and merges processes' shares;
- :mod:`~flashsale.replay.timeline` builds the client-side timeline table;
- :mod:`~flashsale.replay.audit` resets the target and cross-checks its audit;
- :mod:`~flashsale.replay.session` plans a replay and writes its results;
- :mod:`~flashsale.replay.locust_app` is the Locust glue (imports gevent: only
  inside a Locust process; ``flashsale replay`` runs Locust as a subprocess).
"""

__all__: list[str] = []
