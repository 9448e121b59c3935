"""Data: a corpus name or path -> verified UTF-8 text -> integer ids, encoded once and cached -> the train,
validation and test split -> the streams of windows that training reads.

May import `settings`, `storage` and `errors`; knows nothing of models.
"""
