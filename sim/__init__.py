"""The SimPy engine (installed as ``flashsale.sim``): a Scenario in, an Outcome out."""
