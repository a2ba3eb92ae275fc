"""Simulated sessions on store versions: a manifest's users, items and features joined into the inputs
:mod:`mmfeat.agents` runs on, and the session traces written back to the store.

One job: the joins (source tables, store versions, trained runs) that :mod:`mmfeat.agents` never does itself.
"""
