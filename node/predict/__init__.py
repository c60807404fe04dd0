"""The future predictor: time series, ensembles, Monte Carlo, scenarios, Bayesian networks.

Pure computation with numpy and scipy: no I/O, no clock, randomness only from a seeded
`numpy.random.Generator` passed in or made from a seed.
"""
