"""Annotate an archive of video files on a Ray cluster (``fersr-stream --executor ray``): one pipeline per worker,
one file at a time each, resumable, with outputs that appear only when whole.

- :mod:`.driver` schedules the files (largest first) over the workers, retries the ones whose worker died, draws
  the progress bar and sums up;
- :mod:`.worker` is one worker slot: it loads the networks once and runs each file through the same session code
  as a plain run, into a temporary folder (:mod:`.partial`) that is renamed into place when the run ended cleanly;
- :mod:`.manifest` records what each finished file was made from, so that a rerun skips it;
- :mod:`.checks` refuses what cannot run there, :mod:`.sizing` picks the number of workers and their share.

Ray is imported only here, and only when a run asks for it (``pip install -e '.[ray]'``).
"""
