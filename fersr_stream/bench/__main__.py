"""``python -m fersr_stream.bench``: the stream benchmark (:mod:`fersr_stream.bench.stream`)."""

from .stream import main

main()
