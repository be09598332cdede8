"""What a run directory holds and how it is read and written.

- ``directory``: ``RunDir``, the layout of a run directory (every file a run holds), its claim and lock;
- ``checkpoint``: safe, atomic checkpoint files, fingerprints and their checks;
- ``modelcard``: the run's README.md (model card) from what the run recorded.
"""
