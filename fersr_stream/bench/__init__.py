"""Benchmarks, apart from the stream's modules; each prints speed and accuracy side by side, in one run.

- ``python -m fersr_stream.bench`` (:mod:`.stream`): the stream on a synthetic 720p clip, stages alone and in the
  pipeline, with the detector's recall;
- ``python -m fersr_stream.bench.accuracy``: the detect stage's recall, unmatched detections and speed under each
  speed option, on synthetic scenes with known faces and on real footage;
- ``python -m fersr_stream.bench.gpu``: the per-face restoration loop against the batched stages (CUDA, or a small
  CPU run);
- ``python -m fersr_stream.bench.restore``: the official GFPGANer loop against ours, on the same clip and weights;
- ``python -m fersr_stream.bench.mtcnn``: the MTCNN detector against facenet-pytorch's, on a 720p frame of real
  faces;
- ``python -m fersr_stream.bench.choices``: each implementation choice the code comments name, against its
  alternative.
"""
