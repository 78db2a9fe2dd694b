"""The pure core of circleback: plan model, cadences, slot placement, reconciliation.

Nothing here reads a clock, a file, a socket or a database: the current time and every input arrive as
parameters, so each function is deterministic and can be tested with plain values.
"""
