"""Training runs on store versions, Prefect-free: a manifest's split and features in, a run record out.

One job: join what the store and the source hold into the inputs :mod:`mmfeat.recommenders` trains on (it never
reads a store or a dataset itself), and report the runs.

Public names (from their modules):

- :mod:`.run`: ``run_training``, ``validate_train_request``, ``load_training_data``, ``compare_runs``,
  ``TrainRequestError``.
- :mod:`.interactions`: ``filtered_split`` (the split training and the MMRec export share).
- :mod:`.ctr_data`: ``load_ctr_data`` (the CTR set training and the FuxiCTR export share).
- :mod:`.unlearning`: ``run_unlearning``; :mod:`.report`: run summaries and ``mmfeat compare`` tables.
"""
